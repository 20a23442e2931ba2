#!/usr/bin/env bash
# Stop the single-node Slurm of .ci/slurm_up.sh (by its pid files; munged is left running).
set -uo pipefail
DIR="${TRS_SLURM_DIR:-/tmp/trs-slurm}"
for d in slurmd slurmctld; do
  pidfile="$DIR/run/$d.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")" && echo "slurm_down: stopped $d"
  fi
done
rm -f "$DIR/slurm.env"
