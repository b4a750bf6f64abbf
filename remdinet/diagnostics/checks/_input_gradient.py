"""``input_gradient``: outputs cut off from the input image (:class:`~..branches.FlowMonitor`).

An image-shaped output (:data:`~..branches.GRADIENT_OUTPUTS`) that has no autograd path to the
input (a constant) or whose gradient is exactly zero everywhere on some probe image is flagged;
these outputs depend on their input by design, so zero means a clamp, a hard switch or a branch
that never ran cut the path. The finding names the block that cuts it: the first block in forward
order whose outputs have a zero input-gradient while one of its inputs has a non-zero one.
"""
from __future__ import annotations

from ..attribution import attribute
from ..branches import GRADIENT_OUTPUTS, FlowMonitor
from ..report import Finding
from ._base import Check


class InputGradient(Check):
    name = "input_gradient"
    observer = FlowMonitor

    def findings(self) -> list[Finding]:
        out = []
        for key, rec in self.observed.gradients.items():
            value = f"max |dy/dx| {rec.get('max', 0.0):.1e} on {rec['probes']} probes"
            data = {k: v for k, v in rec.items()}
            producer = GRADIENT_OUTPUTS[key]
            if rec["no_path"]:
                by, switch = attribute(self.fixset, f"block:{producer or 'enhanced'}")
                detail = (f"no autograd path to the input (a constant) on {len(rec['no_path'])}/"
                          f"{rec['probes']} probes")
                if producer is not None and not rec["cut_by"]:
                    detail += f"; {producer} did not run"
                out.append(Finding(self.name, key, value, "flag", detail, by, switch, data))
            elif rec["zero"]:
                cut = rec["cut_by"]
                by, switch = attribute(self.fixset, f"block:{cut[0]}") if cut else (None, None)
                detail = (f"zero gradient w.r.t. the input on {len(rec['zero'])}/{rec['probes']} "
                          f"probes (e.g. {rec['zero'][0]}); "
                          + (f"cut by {', '.join(cut)}" if cut else "cut outside the blocks"))
                out.append(Finding(self.name, key, value, "flag", detail, by, switch, data))
            else:
                out.append(Finding(self.name, key, value, "ok", data=data))
        return out
