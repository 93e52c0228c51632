"""End-to-end parity of a GPU run against the reference backend on the same photos (JSON
Lines from `vitbatch classify --format jsonl -k 5`): the same top-1 on every photo and, where
asked, the top-5 probabilities within a tolerance. Exit 1 on any difference.

usage: python3 gpu_compare.py REFERENCE.jsonl CANDIDATE.jsonl [PROB_TOLERANCE]
"""
import json
import sys


def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    ref, got = rows(sys.argv[1]), rows(sys.argv[2])
    tol = float(sys.argv[3]) if len(sys.argv) > 3 else None
    assert [r["path"] for r in ref] == [r["path"] for r in got], "the runs classified different files"
    same_top1, worst, bad = 0, 0.0, []
    compared = 0
    for r, g in zip(ref, got):
        if r["error"] or g["error"]:
            if bool(r["error"]) != bool(g["error"]):
                bad.append(f"{r['path']}: error in one run only")
            continue
        compared += 1
        if r["predictions"][0]["index"] == g["predictions"][0]["index"]:
            same_top1 += 1
        else:
            bad.append(f"{r['path']}: top-1 {r['predictions'][0]['index']} vs {g['predictions'][0]['index']}")
        gp = {p["index"]: p["prob"] for p in g["predictions"]}
        for p in r["predictions"]:
            if p["index"] in gp:
                worst = max(worst, abs(p["prob"] - gp[p["index"]]))
    verdict = not bad and (tol is None or worst <= tol)
    print(f"{sys.argv[2]}: same top-1 on {same_top1}/{compared} photos, max |prob diff| {worst:.2e}"
          + (f" (tolerance {tol:g})" if tol is not None else "") + (" OK" if verdict else " FAILED"))
    for line in bad:
        print("  " + line)
    sys.exit(0 if verdict else 1)


if __name__ == "__main__":
    main()
