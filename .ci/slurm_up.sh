#!/usr/bin/env bash
# Start a single-node Slurm cluster for tests/test_slurm.py (idempotent).
#
# Installs Debian's slurm-wlm and munge where the machine allows (root + apt), starts munged,
# writes a slurm.conf for this machine (one node with `nproc` CPUs, one partition "debug") into
# $TRS_SLURM_DIR (default /tmp/trs-slurm) and starts slurmctld and slurmd. On success it writes
# $TRS_SLURM_DIR/slurm.env (`export SLURM_CONF=...`), which the test reads; on failure it writes
# $TRS_SLURM_DIR/unavailable with the reason, prints it and exits 0 (the test then skips and
# says why). Running it again while the cluster is up does nothing. Stop: .ci/slurm_down.sh.
set -uo pipefail
DIR="${TRS_SLURM_DIR:-/tmp/trs-slurm}"
mkdir -p "$DIR"/{state,spool,log,run}
CONF="$DIR/slurm.conf"
rm -f "$DIR/unavailable"

unavailable() {
  echo "$1" > "$DIR/unavailable"
  rm -f "$DIR/slurm.env"
  echo "slurm_up: Slurm not started: $1 (tests/test_slurm.py will be skipped)"
  exit 0
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Already up?
if alive "$DIR/run/slurmctld.pid" && alive "$DIR/run/slurmd.pid" && \
   SLURM_CONF="$CONF" sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mix|alloc'; then
  echo "export SLURM_CONF=$CONF" > "$DIR/slurm.env"
  echo "slurm_up: already running ($CONF)"
  exit 0
fi

# Install.
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    unavailable "slurm-wlm/munge are not installed and this user cannot apt-get install them"
  fi
  echo "slurm_up: installing slurm-wlm and munge"
  (apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 || \
   (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q slurm-wlm munge >/dev/null 2>&1)) || \
    unavailable "apt-get install slurm-wlm munge failed"
fi
[ "$(id -u)" = 0 ] || unavailable "this single-node setup runs the daemons as root; not root"

# munge: a key, then the daemon (as root, hence --force).
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  mkdir -p /etc/munge /var/log/munge /var/lib/munge /run/munge
  if ! [ -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null
  fi
  chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key
  chown -R root:root /etc/munge /var/log/munge /var/lib/munge /run/munge 2>/dev/null
  munged --force >/dev/null 2>&1 || unavailable "munged did not start"
  sleep 1
  munge -n | unmunge >/dev/null 2>&1 || unavailable "munge does not answer after starting munged"
fi

HOST="$(hostname -s)"
CPUS="$(nproc)"
MEM_MB="$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)"
cat > "$CONF" <<EOF
# Written by .ci/slurm_up.sh for the tests: one node, this machine.
ClusterName=trs-ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

export SLURM_CONF="$CONF"
# A stale controller of an earlier run (other config) is stopped first, by its pid file only.
for d in slurmd slurmctld; do
  if alive "$DIR/run/$d.pid"; then kill "$(cat "$DIR/run/$d.pid")" 2>/dev/null; sleep 1; fi
done
slurmctld -f "$CONF" >/dev/null 2>&1 || unavailable "slurmctld did not start (see $DIR/log/slurmctld.log)"
slurmd -f "$CONF" >/dev/null 2>&1 || unavailable "slurmd did not start (see $DIR/log/slurmd.log)"
for _ in $(seq 1 30); do
  if sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mix|alloc'; then
    echo "export SLURM_CONF=$CONF" > "$DIR/slurm.env"
    echo "slurm_up: single-node Slurm up: $HOST, $CPUS CPUs, partition debug ($CONF)"
    exit 0
  fi
  # A node left DOWN by an earlier run comes back.
  scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
  sleep 1
done
unavailable "the node did not become idle within 30 s ($(sinfo -h -o '%T %E' 2>&1 | head -1))"
