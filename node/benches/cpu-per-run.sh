#!/usr/bin/env bash
# cpu-per-run.sh BIN FILES [RUNS]: wall and CPU seconds of a `renkei demo` process per batch of
# files dropped into its care-management office's outbox (until all are acked in sent/).
#   BIN    a renkei binary (e.g. target/release/renkei, or another build to compare)
#   FILES  a folder of UPPLAN files from 1310000001 to 1310000011 named with the date 20260929,
#          e.g. made by ../shared/tools/renkei-gen-upplan.py SAMPLE.CSV FILES 1000 50000
# Both offices run in the one demo process, so its CPU time is the whole delivery's.
set -euo pipefail
BIN=$1; FILES=$2; RUNS=${3:-3}
D=$(mktemp -d /tmp/renkei-cpu.XXXXXX); A=$D/demo/offices/1310000001
"$BIN" demo --dir "$D/demo" > "$D/demo.log" 2>&1 & PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 120); do [ "$(ls "$A/sent" 2>/dev/null | wc -l)" -ge 21 ] && break; sleep 0.5; done
n=$(ls "$FILES" | wc -l)
for r in $(seq "$RUNS"); do
  day=202612$(printf '%02d' "$r")
  rm -rf "$A/.stage"; mkdir -p "$A/.stage"
  for f in "$FILES"/*; do b=$(basename "$f"); cp "$f" "$A/.stage/${b/20260929/$day}"; done; sync
  c0=$(awk '{print $14+$15}' /proc/$PID/stat); s=$(date +%s.%N)
  mv "$A/.stage"/* "$A/outbox/"
  while [ "$(ls "$A/sent" | grep -c "_$day")" -lt "$n" ]; do sleep 0.02; done
  e=$(date +%s.%N); c1=$(awk '{print $14+$15}' /proc/$PID/stat)
  printf 'run %d: %d files, wall %.3f s, cpu %.2f s\n' "$r" "$n" "$(echo "$e - $s" | bc)" \
    "$(echo "($c1 - $c0) / $(getconf CLK_TCK)" | bc -l)"
done
