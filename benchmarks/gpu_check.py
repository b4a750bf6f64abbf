"""The Python side of ``benchmarks/gpu_check.sh`` (see benchmarks/README.md).

``python benchmarks/gpu_check.py preflight OUT``: exit 1 with the reason when there is no CUDA
device, else write ``OUT/preflight.json`` (the device, torch and CUDA versions).

``python benchmarks/gpu_check.py summary OUT``: read what the stages left in ``OUT`` (``stages.tsv``
written by the script, the stage logs, ``cuda_tests.xml``, ``model*.json``), print one Markdown
table and write ``OUT/gpu_check.json``; exit 1 when any stage failed, timed out or did not run, or
when a CUDA test was skipped (on a CUDA machine a skip means the tests did not see the device).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import torch

ABLATION_LINE = re.compile(r"ablation wall time: (\d+) s \((\d+) cell\(s\) trained now, "
                           r"(\d+) finished in all\)")


def preflight(out: Path) -> int:
    info: dict[str, Any] = {"torch": torch.__version__, "cuda_build": torch.version.cuda,
                            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    if not torch.cuda.is_available():
        info["error"] = (
            f"no CUDA device: torch.cuda.is_available() is False (torch {torch.__version__}, CUDA "
            f"build {torch.version.cuda or 'none'}, CUDA_VISIBLE_DEVICES="
            f"{info['cuda_visible_devices'] if info['cuda_visible_devices'] is not None else '(unset)'}"
            f"). This check measures the CUDA paths: run it on a machine with an NVIDIA GPU and a "
            f"CUDA build of torch (PYTHON=... selects the interpreter). Nothing was measured.")
        (out / "preflight.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
        print(f"gpu_check: FAILED: {info['error']}", file=sys.stderr)
        return 1
    props = torch.cuda.get_device_properties(0)
    info.update(device=props.name, device_count=torch.cuda.device_count(),
                capability=f"{props.major}.{props.minor}", memory_gb=props.total_memory / 2**30,
                cudnn=torch.backends.cudnn.version())
    (out / "preflight.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    print(f"gpu_check: {props.name}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    return 0


def stages(out: Path) -> dict[str, dict[str, Any]]:
    """``stages.tsv``: name, exit status ('-' = not run), seconds, time limit; one line a stage."""
    rows = {}
    for line in (out / "stages.tsv").read_text(encoding="utf-8").splitlines():
        name, rc, seconds, limit = line.split("\t")
        if rc == "-":
            status = "NOT RUN (time budget spent)"
        elif rc in ("124", "137"):
            status = f"TIMED OUT after {limit} s"
        else:
            status = "ok" if rc == "0" else f"FAILED (exit {rc})"
        rows[name] = {"name": name, "rc": None if rc == "-" else int(rc), "seconds": int(seconds),
                      "limit": int(limit), "status": status, "ok": rc == "0"}
    return rows


def cuda_tests(out: Path, stage: dict[str, Any]) -> dict[str, Any]:
    path = out / "cuda_tests.xml"
    if not path.is_file():
        return {**stage, "result": "no report"}
    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    result = (f"{passed} passed, {counts['failures'] + counts['errors']} failed, "
              f"{counts['skipped']} skipped")
    ok = stage["ok"] and counts["tests"] > 0 and passed == counts["tests"]
    status = stage["status"] if not stage["ok"] else ("ok" if ok else "FAILED (not all passed)")
    return {**stage, **counts, "result": result, "ok": ok, "status": status}


def model_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for r in json.loads(path.read_text(encoding="utf-8"))["rows"]:
        a = r["args"]
        step = r["train_step"]["median"]
        config = (f"{a['size']}² {a['precision']}, batch {a['batch']}, "
                  f"{'torch.compile' if a['compile'] else 'eager'}")
        first = (f"first step {r['first_step_seconds']:.1f} s; " if "first_step_seconds" in r
                 else "")
        result = (f"{first}train step {step:.4f} s ({a['batch'] / step:.1f} img/s), inference "
                  f"{r['inference']['median']:.4f} s, peak {r['peak_memory_mb']:.0f} MB allocated")
        rows.append({"config": config, "result": result, "measured": r})
    return rows


def last_json_line(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def loader_rows(path: Path) -> list[dict[str, Any]]:
    feed = last_json_line(path)
    if feed is None:
        return []
    rows = []
    for r in feed["rows"]:
        config = (f"{feed['image_size']} px, batch {feed['batch_size']}, num_workers "
                  f"{r['num_workers']}, {'pinned' if r['pin_memory'] else 'pageable'} memory"
                  f"{', persistent workers' if r['persistent_workers'] else ''}")
        result = (f"{r['images_per_second']:.0f} img/s (first epoch, with start-up: "
                  f"{r['first_epoch_images_per_second']:.0f})")
        rows.append({"config": config, "result": result, "measured": r})
    return rows


def ablation_result(log: Path, stage: dict[str, Any]) -> str:
    text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
    found = ABLATION_LINE.findall(text)
    if not found:
        return "not measured"
    seconds, trained, finished = found[-1]
    return (f"{seconds} s ablation wall time ({stage['seconds']} s with start-up), {trained} "
            f"cell(s) trained, {finished} finished")


def summary(out: Path, ablation_epochs: int) -> int:
    st = stages(out)
    pre = json.loads((out / "preflight.json").read_text(encoding="utf-8"))
    table: list[tuple[str, str, str, str]] = []
    report: dict[str, Any] = {"date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                              "preflight": pre, "stages": list(st.values())}

    tests = cuda_tests(out, st["cuda_tests"])
    report["cuda_tests"] = tests
    table.append(("CUDA tests", "pytest -m cuda", tests["result"], tests["status"]))

    for name, what in (("model", "eager rows"), ("model_compiled", "torch.compile row")):
        rows = model_rows(out / f"{name}.json")
        report[name] = [r["measured"] for r in rows]
        table += [("model", r["config"], r["result"], st[name]["status"]) for r in rows]
        if not rows:
            table.append(("model", what, "not measured", st[name]["status"]))

    rows = loader_rows(out / "logs" / "loader.log")
    report["loader"] = [r["measured"] for r in rows]
    table += [("loader", r["config"], r["result"], st["loader"]["status"]) for r in rows]
    if not rows:
        table.append(("loader", "num_workers 0 and 4", "not measured", st["loader"]["status"]))

    report["ablation"] = []
    for wpg in (1, 4):
        name = f"ablate_wpg{wpg}"
        result = ablation_result(out / "logs" / f"{name}.log", st[name])
        report["ablation"].append({"workers_per_gpu": wpg, "epochs": ablation_epochs,
                                   "result": result, **st[name]})
        table.append(("ablation", f"quick preset, 7 variants, {ablation_epochs} epochs, "
                                  f"--workers-per-gpu {wpg}", result, st[name]["status"]))

    ok = tests["ok"] and all(s["ok"] for s in st.values())
    header = (f"GPU check {report['date'][:10]}: {pre['device']}, torch {pre['torch']}, CUDA "
              f"{pre['cuda_build']}, cuDNN {pre['cudnn']}")
    lines = [header, "", "| check | configuration | result | status |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in table]
    report.update(ok=ok, table="\n".join(lines))
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(report["table"])
    print(f"\n{'all stages passed' if ok else 'gpu_check: FAILED: see the status column'}; "
          f"JSON: {out / 'gpu_check.json'}, logs: {out / 'logs'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=["preflight", "summary"])
    p.add_argument("out", type=Path)
    p.add_argument("--ablation-epochs", type=int, default=0)
    opts = p.parse_args(argv)
    if opts.step == "preflight":
        return preflight(opts.out)
    return summary(opts.out, opts.ablation_epochs)


if __name__ == "__main__":
    sys.exit(main())
