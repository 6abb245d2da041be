"""Class mode: grade every submission in a folder, then write a gradebook (CSV), the reports
(JSON) and one HTML class report (score histogram, pass rate per check, each student's
feedback and annotated transcripts; each scenario's ladder diagram as its own page).

A submission is a subfolder (the student's files) or a single ``.py`` file in the folder; the
student's name is the subfolder or file name.  Each student gets a seed derived from the class
seed and the name, so two students never see the same data (and the report says which seed
reproduces a student's run: ``mailtrace grade EXERCISE SUBMISSION --seed N``).
"""

from __future__ import annotations

import concurrent.futures
import csv
import hashlib
import html
import json
from pathlib import Path
from typing import Callable

from mailtrace.grading.exercise import Exercise
from mailtrace.grading.report import Report, visible
from mailtrace.knowledge import messages


def _t(key: str, lang: str, /, **fields: object) -> str:
    """One of the class report's words (``[class.*]`` of messages/grading.toml) in ``lang``."""
    return messages.text("grading", key, lang, **fields)


def submissions(folder: Path) -> list[tuple[str, Path]]:
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.name == "__pycache__":
            continue
        if p.is_dir() or p.suffix == ".py":
            out.append((p.stem if p.is_file() else p.name, p))
    return out


def student_seed(seed: int, name: str) -> int:
    return int(hashlib.sha256(f"{seed}/{name}".encode()).hexdigest()[:6], 16)


def grade_class(exercise: Exercise, folder: Path, *, seed: int, jobs: int = 2,
                scenarios: list[str] | None = None, lang: str = "en",
                on_done: Callable[[str, Report], None] | None = None,
                show_secrets: bool = False) -> list[tuple[str, Report]]:
    """Grade every submission; ``jobs`` programs run at once (plus the ones waiting on a silent server)."""
    from mailtrace.grading.grader import Pools, grade

    subs = submissions(folder)
    pools = Pools(jobs)

    def one(item: tuple[str, Path]) -> tuple[str, Report]:
        name, path = item
        report = grade(exercise, path, seed=student_seed(seed, name), scenarios=scenarios, pools=pools, lang=lang,
                       show_secrets=show_secrets)
        if on_done is not None:
            on_done(name, report)
        return name, report

    # students are only coordinators: their scenarios queue in the shared pools
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(2, jobs * 3))
    try:
        return list(pool.map(one, subs))
    except KeyboardInterrupt:  # Ctrl-C: stop now, not after every queued student has been graded
        pool.shutdown(wait=False, cancel_futures=True)
        pools.cancel()
        raise
    finally:
        pool.shutdown(wait=True)
        pools.close()


def check_ids(exercise: Exercise) -> list[str]:
    ids = list(exercise.policy_checks)
    for sc in exercise.scenarios:
        for cid in sc.checks:
            if cid not in ids:
                ids.append(cid)
    return ids


def write_csv(path: Path, exercise: Exercise, results: list[tuple[str, Report]]) -> None:
    """The gradebook: one row per student.  Its column names are identifiers, the same in every
    language (an LMS import or a script reads them): student, score, max_score, seed, error,
    then the checks by their ids."""
    ids = check_ids(exercise)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", "score", "max_score", "seed", "error", *ids])
        for name, r in results:
            by = r.checks_by_id()
            w.writerow([name, f"{r.score:g}", f"{r.max_score:g}", r.seed, r.error,
                        *[f"{by[c][0]:.2f}" if c in by else "" for c in ids]])


def write_json(path: Path, exercise: Exercise, results: list[tuple[str, Report]], seed: int) -> None:
    data = {"format": "mailtrace-class/1", "exercise": exercise.name, "seed": seed,
            "students": [{"student": name, **r.to_dict(transcripts=False)} for name, r in results]}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def pass_rates(exercise: Exercise, results: list[tuple[str, Report]]) -> dict[str, float]:
    """Check id -> fraction of students who lost no points on it."""
    ids = check_ids(exercise)
    rates = {}
    for cid in ids:
        judged = [r.checks_by_id().get(cid) for _, r in results]
        judged = [x for x in judged if x is not None]
        rates[cid] = sum(1 for p, m in judged if m - p < 1e-6) / len(judged) if judged else 0.0
    return rates


def _histogram_svg(scores: list[float], max_score: float, bins: int = 10, label: str = "") -> str:
    if not scores:
        return ""
    counts = [0] * bins
    for s in scores:
        i = min(bins - 1, int(bins * s / max_score)) if max_score else 0
        counts[i] += 1
    top = max(counts) or 1
    w, h, bw = 420, 160, 40
    bars = []
    for i, c in enumerate(counts):
        bh = int((h - 30) * c / top)
        x = 10 + i * bw
        lo = round(max_score * i / bins)
        bars.append(f'<rect x="{x}" y="{h - 20 - bh}" width="{bw - 4}" height="{bh}" fill="#1f5fbf"/>'
                    f'<text x="{x + bw / 2 - 2}" y="{h - 24 - bh}" font-size="11" text-anchor="middle">{c or ""}</text>'
                    f'<text x="{x + bw / 2 - 2}" y="{h - 6}" font-size="10" text-anchor="middle">{lo}</text>')
    return f'<svg width="{w}" height="{h}" role="img" aria-label="{html.escape(label)}">{"".join(bars)}</svg>'


CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:1.5em;color:#1d232a}table{border-collapse:collapse}
td,th{border:1px solid #dde2e7;padding:2px 8px;text-align:left}th{background:#f3f5f7}.ok{color:#1b7f3a}
.bad{color:#c0262d}.bar{display:inline-block;height:10px;background:#1b7f3a}pre{background:#f7f8fa;padding:.6em;
overflow-x:auto;font-size:12px}details{margin:.3em 0}summary{cursor:pointer}.mark{background:#ffe3e3}"""


def write_html(path: Path, exercise: Exercise, results: list[tuple[str, Report]], seed: int,
               ladders: dict[tuple[str, str], str] | None = None, lang: str = "en") -> None:
    from mailtrace.transcript.text import format_event

    e = lambda text, quote=True: html.escape(visible(str(text)), quote)  # noqa: E731
    ladders = ladders or {}
    scores = [r.score for _, r in results]
    max_score = max((r.max_score for _, r in results), default=0.0)
    rates = pass_rates(exercise, results)
    title = e(_t("class.title", lang, exercise=exercise.name))
    mean = f"{(sum(scores) / len(scores)) if scores else 0:.1f}"
    out = [f"<!doctype html><html lang='{e(lang)}'><meta charset='utf-8'><title>{title}</title><style>{CSS}</style>",
           f"<h1>{title}</h1>",
           f"<p>{e(_t('class.summary', lang, count=len(results), seed=seed, mean=mean, max=f'{max_score:g}'))}</p>",
           f"<h2>{e(_t('class.scores', lang))}</h2>",
           _histogram_svg(scores, max_score or 1, label=_t("class.histogram", lang)),
           f"<h2>{e(_t('class.pass-rates', lang))}</h2><table><tr><th>{e(_t('class.check', lang))}</th>"
           f"<th>{e(_t('class.passed-by', lang))}</th><th></th></tr>"]
    for cid, rate in sorted(rates.items(), key=lambda kv: kv[1]):
        out.append(f"<tr><td>{e(cid)}</td><td>{rate * 100:.0f}%</td>"
                   f"<td><span class='bar' style='width:{int(rate * 200)}px'></span></td></tr>")
    out.append(f"</table><h2>{e(_t('class.students', lang))}</h2><table><tr><th>{e(_t('class.student', lang))}</th>"
               f"<th>{e(_t('class.score', lang))}</th><th>{e(_t('class.lost-points-on', lang))}</th></tr>")
    for name, r in results:
        lost = ", ".join(f"{k} (−{v:.1f})" for k, v in sorted(r.lost().items()))
        out.append(f"<tr><td><a href='#s-{e(name)}'>{e(name)}</a></td><td>{r.score:g} / {r.max_score:g}</td>"
                   f"<td>{e(r.error or lost)}</td></tr>")
    out.append("</table>")
    for name, r in results:
        out.append(f"<h2 id='s-{e(name)}'>{e(name)}: {r.score:g} / {r.max_score:g}</h2>"
                   f"<p>{e(_t('class.reproduce', lang, seed=r.seed))} "
                   f"<code>mailtrace grade {e(exercise.name)} {e(r.submission)} --seed {r.seed}</code></p>")
        if r.error:
            out.append(f"<p class='bad'>{e(r.error)}</p>")
        for s in r.scenarios:
            bad = [c for c in s.checks if not c.passed]
            cls = "bad" if bad else "ok"
            link = ladders.get((name, s.name))
            out.append(f"<details{' open' if bad else ''}><summary class='{cls}'>{e(s.name)}: "
                       f"{s.points:.2f}/{s.max_points:.2f} — {e(s.status)}</summary>")
            if link:
                out.append(f"<p><a href='{e(link)}'>{e(_t('class.ladder', lang))}</a></p>")
            for c in bad:
                out.append(f"<p class='bad'><b>{e(c.id)}</b>: {e(c.title)}</p><pre>{e(c.feedback)}</pre>")
            if s.events:
                lines = []
                for ev in s.events:
                    lines.extend(format_event(ev, show_secrets=r.show_secrets, fold=True, lang=lang, annotate=True))
                out.append(f"<details><summary>{e(_t('class.annotated-transcript', lang))}</summary><pre>"
                           + e("\n".join(lines)) + "</pre></details>")
            if s.stderr:
                out.append(f"<details><summary>{e(_t('class.stderr', lang))}</summary><pre>" + e(s.stderr)
                           + "</pre></details>")
            out.append("</details>")
    path.write_text("\n".join(out), encoding="utf-8")


def write_ladders(folder: Path, results: list[tuple[str, Report]], lang: str = "en") -> dict[tuple[str, str], str]:
    """One ladder-diagram page per (student, scenario) with a transcript; returns relative links."""
    from mailtrace.transcript.html import render_html
    from mailtrace.transcript.jsonl import JsonlSink

    links = {}
    for name, r in results:
        for s in r.scenarios:
            if not s.events:
                continue
            rel = Path("transcripts") / _safe(name) / f"{_safe(s.name)}.html"
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(render_html(s.events, lang=lang, show_secrets=r.show_secrets, title=f"{name}: {s.name}"),
                                      encoding="utf-8")
            # the same transcript as JSON Lines: `mailtrace show` renders it again, in any format
            sink = JsonlSink(folder / rel.with_suffix(".jsonl"), show_secrets=r.show_secrets)
            for event in s.events:
                sink.handle(event)
            sink.close()
            links[(name, s.name)] = str(rel)
    return links


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "_"
