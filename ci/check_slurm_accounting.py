#!/usr/bin/env python3
"""Check from Slurm accounting (sacct) that a `snakemake --profile slurm` run placed its jobs right.

    python ci/check_slurm_accounting.py --gpu-rules simulate,read_passive --starttime 2026-01-01T12:00:00

Asserts, over every job allocation sacct lists (`sacct -X`, the current user's jobs):
  * every job is COMPLETED;
  * a job of a GPU rule ran in the GPU partition with `gres/gpu=1` in AllocTRES;
  * every other job ran in the CPU partition with no `gres/gpu` in AllocTRES;
  * at least one GPU job and one CPU job were seen.
Exits 1 with one line per violation, 2 when sacct fails. Standard library only.

How jobs are matched to rules: snakemake-executor-plugin-slurm (2.8) names every job of one
snakemake run after the run's UUID (`--job-name <uuid>`, used for its status queries), so
JobName does not carry the rule. The rule is in `--comment rule_<rule>[_wildcards_<...>]`
(`group_<group>` for group jobs) and in the wrapped command's `--allowed-rules <rule...>`.
sacct stores the comment only where slurm.conf has `AccountingStoreFlags=job_comment` (the local
test cluster has not), so the rule is read from SubmitLine (sacct >= 22.05, the sbatch command
line): its `--allowed-rules`, else the Comment field, else SubmitLine's `--comment`.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field

SHOWN = ["JobID", "JobName", "Partition", "AllocTRES", "State"]
# SubmitLine goes last: it is free text and may itself contain the '|' delimiter.
FIELDS = SHOWN + ["Comment", "SubmitLine"]


@dataclass
class Job:
    jobid: str
    jobname: str
    partition: str
    alloc_tres: str
    state: str
    comment: str = ""
    submit_line: str = ""
    rules: list[str] = field(default_factory=list)

    def shown(self) -> str:
        line = "|".join([self.jobid, self.jobname, self.partition, self.alloc_tres, self.state])
        return f"{line}  rule={','.join(self.rules) or '?'}"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpu-rules", required=True,
                   help="comma-separated names of the rules that must run on a GPU")
    p.add_argument("--starttime", "-S",
                   help="only jobs since this time (sacct --starttime, e.g. 2026-01-01T12:00:00); "
                        "sacct's default is today 00:00")
    p.add_argument("--gpu-partition", default="gpu", help="partition of GPU jobs (default: gpu)")
    p.add_argument("--cpu-partition", default="cpu", help="partition of CPU jobs (default: cpu)")
    p.add_argument("--sacct", default="sacct", help="the sacct executable (default: sacct)")
    p.add_argument("--from-file", metavar="FILE",
                   help="parse saved `sacct -X --parsable2 --noheader --format="
                        + ",".join(FIELDS) + "` output instead of calling sacct")
    return p.parse_args(argv)


def run_sacct(args) -> tuple[str, list[str]]:
    """Call sacct; fall back to the fields without SubmitLine on a Slurm older than 22.05."""
    base = [args.sacct, "-X", "--parsable2", "--noheader"]
    if args.starttime:
        base.append(f"--starttime={args.starttime}")
    err = ""
    for fields in (FIELDS, SHOWN + ["Comment"]):
        cmd = base + ["--format=" + ",".join(fields)]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            sys.exit(f"check_slurm_accounting: cannot run {shlex.join(cmd)}: {e}")
        if res.returncode == 0:
            print(f"$ {shlex.join(cmd)}")
            return res.stdout, fields
        err = res.stderr.strip()
    print(f"check_slurm_accounting: sacct failed: {err}", file=sys.stderr)
    sys.exit(2)


def parse_sacct(text: str, fields: list[str]) -> list[Job]:
    """Parse --parsable2 --noheader output; a line not starting with a job id continues the last."""
    n = len(fields)
    records: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if records and not re.match(r"^\d+(_\S+)?\|", line):
            records[-1] += "\n" + line  # a newline inside SubmitLine/Comment
        else:
            records.append(line)
    jobs = []
    for rec in records:
        parts = rec.split("|", n - 1)  # the last field keeps any '|' of its own
        parts += [""] * (n - len(parts))
        row = dict(zip(fields, parts))
        jobs.append(Job(row["JobID"], row["JobName"], row["Partition"], row["AllocTRES"],
                        row["State"], row.get("Comment", ""), row.get("SubmitLine", "")))
    return jobs


def rules_from_comment(comment: str) -> list[str]:
    m = re.fullmatch(r"(?:rule|group)_(.+?)(?:_wildcards_.*)?", comment.strip(), re.S)
    return [m.group(1)] if m else []


def rules_of(job: Job) -> list[str]:
    """Rule names of a job: `--allowed-rules` of SubmitLine (exact, lists all rules of a group
    job), else the Comment field, else the `--comment` of SubmitLine."""
    tokens: list[str] = []
    if job.submit_line:
        try:
            tokens = shlex.split(job.submit_line)
        except ValueError:  # unbalanced quotes in a reconstructed command line
            tokens = job.submit_line.split()
    if "--allowed-rules" in tokens:
        rules = []
        for tok in tokens[tokens.index("--allowed-rules") + 1:]:
            if tok.startswith("-"):
                break
            rules.append(tok.strip("'\""))
        if rules:
            return rules
    if job.comment:
        return rules_from_comment(job.comment)
    m = re.search(r"--comment[= ]+['\"]?([^\s'\"]+)", job.submit_line)
    return rules_from_comment(m.group(1)) if m else []


def gpu_count(alloc_tres: str) -> int:
    """GPUs in AllocTRES: the untyped `gres/gpu=N`, else the sum of typed `gres/gpu:<type>=N`."""
    untyped, typed = None, 0
    for item in alloc_tres.split(","):
        key, _, val = item.partition("=")
        if key == "gres/gpu":
            untyped = int(val)
        elif key.startswith("gres/gpu:"):
            typed += int(val)
    return untyped if untyped is not None else typed


def check(jobs: list[Job], gpu_rules: set[str], gpu_partition: str, cpu_partition: str):
    problems = []
    n_gpu = n_cpu = 0
    for job in jobs:
        job.rules = rules_of(job)
        tag = f"job {job.jobid} (rule {','.join(job.rules) or '?'})"
        if job.state != "COMPLETED":
            problems.append(f"{tag}: state {job.state}, expected COMPLETED")
        if not job.rules:
            problems.append(f"{tag}: cannot tell its rule from Comment or SubmitLine "
                            f"(not a snakemake job? restrict with --starttime)")
            continue
        gpus = gpu_count(job.alloc_tres)
        if gpu_rules & set(job.rules):
            n_gpu += 1
            if job.partition != gpu_partition:
                problems.append(f"{tag}: GPU rule ran in partition '{job.partition}', "
                                f"expected '{gpu_partition}'")
            if gpus != 1:
                problems.append(f"{tag}: GPU rule has AllocTRES '{job.alloc_tres}', "
                                f"expected gres/gpu=1")
        else:
            n_cpu += 1
            if job.partition != cpu_partition:
                problems.append(f"{tag}: CPU rule ran in partition '{job.partition}', "
                                f"expected '{cpu_partition}'")
            if gpus:
                problems.append(f"{tag}: CPU rule was given a GPU: AllocTRES '{job.alloc_tres}'")
    if n_gpu == 0:
        problems.append(f"no job of a GPU rule ({','.join(sorted(gpu_rules))}) in the accounting")
    if n_cpu == 0:
        problems.append("no job of a CPU rule in the accounting")
    return problems, n_gpu, n_cpu


def main(argv=None) -> int:
    args = parse_args(argv)
    gpu_rules = {r.strip() for r in args.gpu_rules.split(",") if r.strip()}
    if not gpu_rules:
        sys.exit("check_slurm_accounting: --gpu-rules is empty")
    if args.from_file:
        with open(args.from_file) as fh:
            text, fields = fh.read(), FIELDS
    else:
        text, fields = run_sacct(args)
    jobs = parse_sacct(text, fields)
    problems, n_gpu, n_cpu = check(jobs, gpu_rules, args.gpu_partition, args.cpu_partition)
    print("|".join(SHOWN) + "  (rule: from Comment/SubmitLine)")
    for job in jobs:
        print(job.shown())
    if problems:
        print(f"\nSLURM ACCOUNTING CHECK FAILED ({len(problems)} problem(s) in {len(jobs)} jobs):",
              file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print(f"\nOK: {len(jobs)} jobs COMPLETED; {n_gpu} GPU job(s) in '{args.gpu_partition}' "
          f"with gres/gpu=1, {n_cpu} CPU job(s) in '{args.cpu_partition}' without a GPU.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
