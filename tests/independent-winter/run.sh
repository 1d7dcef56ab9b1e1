#!/usr/bin/env bash
# Independent winter test: generate telemetry with an independent model, replay it through
# `rules backtest`, score the orders against ground truth, print the card.
#
#   tests/independent-winter/run.sh [--seed N] [--households N] [--days N] [--every S]
#                                   [--out DIR] [--bin PATH] [--rules FILE] [--keep]
#
# The rules binary: --bin if given; else target/release/rules if it exists and is not older
# than the sources under rules/ and wire/; else `cargo build -p rules --bin rules` (debug).
# --rules FILE replays with that rule file instead of the built-in pack (e.g. an older
# commit's: `git show REV:rules/default.toml > old.toml`). Everything runs under `nice`.
# Outputs go to --out (default tests/independent-winter/out/seed<N>); telemetry.jsonl is
# deleted at the end unless --keep (it is large: ~1 GB at the default size).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SEED=1
HOUSEHOLDS=300
DAYS=10
EVERY=120
OUT=""
BIN=""
RULES=()
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --seed) SEED="$2"; shift 2 ;;
        --households) HOUSEHOLDS="$2"; shift 2 ;;
        --days) DAYS="$2"; shift 2 ;;
        --every) EVERY="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --bin) BIN="$2"; shift 2 ;;
        --rules) RULES=(--rules "$2"); shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
OUT="${OUT:-$HERE/out/seed$SEED}"
mkdir -p "$OUT"

if [ -z "$BIN" ]; then
    REL="$ROOT/target/release/rules"
    if [ -x "$REL" ] && [ -z "$(find "$ROOT/rules" "$ROOT/wire" -newer "$REL" -type f \
            \( -name '*.rs' -o -name '*.toml' \) -not -path '*/target/*' 2>/dev/null | head -1)" ]; then
        BIN="$REL"
    else
        if [ -x "$REL" ]; then
            echo "note: $REL is older than the rules/wire sources; building the debug binary" >&2
        fi
        (cd "$ROOT" && nice -n 19 cargo build -q -p rules --bin rules)
        BIN="$ROOT/target/debug/rules"
    fi
fi
echo "rules binary: $BIN" >&2

echo "generating (seed $SEED, $HOUSEHOLDS households, $DAYS days, every ${EVERY}s) -> $OUT" >&2
nice -n 19 python3 "$HERE/generate.py" --seed "$SEED" --households "$HOUSEHOLDS" \
    --days "$DAYS" --every "$EVERY" --out "$OUT"

echo "replaying through rules backtest..." >&2
nice -n 19 "$BIN" backtest --input "$OUT/telemetry.jsonl" --devices "$OUT/devices.json" \
    --lateness 2m --json --progress-every 500000 "${RULES[@]}" > "$OUT/events.jsonl" 2> "$OUT/backtest.stderr"
grep -v '^progress:' "$OUT/backtest.stderr" | head -20 >&2 || true

python3 "$HERE/score.py" --truth "$OUT/truth.json" --events "$OUT/events.jsonl" \
    --json "$OUT/score.json" | tee "$OUT/card.txt"

if [ "$KEEP" -eq 0 ]; then
    rm -f "$OUT/telemetry.jsonl"
fi
