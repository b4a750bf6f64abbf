"""Ships the presets (experiments/*.toml) and study spaces (studies/*.toml) inside the wheel.

They stay top-level folders, the one source of truth; a regular build copies them into
remdinet/exp/bundled/ of the wheel, where ``remdinet.exp.presets.shipped_dir`` finds them. An
editable install builds no copy: it reads the top-level folders in place. Everything else is in
pyproject.toml.
"""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("experiments", "studies")


class BuildPyWithPresets(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for kind in SHIPPED:
            target = Path(self.build_lib, "remdinet", "exp", "bundled", kind)
            self.mkpath(str(target))
            for source in sorted(Path(kind).glob("*.toml")):
                self.copy_file(str(source), str(target / source.name))


setup(cmdclass={"build_py": BuildPyWithPresets})
