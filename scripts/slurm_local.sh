#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the tests and for trying the Slurm backend:
# munged, slurmctld and slurmd as plain daemons (no systemd), as root, with their config,
# state, sockets and logs under one directory. Accounting is off: the queue follows jobs with
# squeue and `scontrol show job`, which need no database.
#
#   scripts/slurm_local.sh start     idempotent: starts what is not running, leaves the rest
#   scripts/slurm_local.sh status    exit 0 when the node is up and takes jobs, 3 otherwise
#   scripts/slurm_local.sh stop      stops the daemons and removes the directory
#
# Needs Debian's packages: apt-get install -y slurm-wlm munge. Settings (environment):
#   ADAPTER_SLURM_DIR    where everything lives (default /tmp/adapter-slurm)
#   ADAPTER_SLURM_PORT   slurmctld's port; slurmd takes the next one (default 6817)
# Clients find the cluster through /etc/slurm/slurm.conf, which the script links to its own
# config when no other config is there (otherwise: export SLURM_CONF=$ADAPTER_SLURM_DIR/slurm.conf).
set -euo pipefail

DIR=${ADAPTER_SLURM_DIR:-/tmp/adapter-slurm}
PORT=${ADAPTER_SLURM_PORT:-6817}
CONF=$DIR/slurm.conf
ETC_CONF=/etc/slurm/slurm.conf
PARTITION=debug

die() { echo "slurm_local.sh: $*" >&2; exit 2; }

alive() {  # alive PIDFILE: the daemon it names is running
    [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

wait_for() {  # wait_for WHAT COMMAND...: up to 30 s for COMMAND to succeed
    local what=$1; shift
    for _ in $(seq 1 150); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "$what did not come up; see the logs in $DIR"
}

write_config() {
    local host cpus mem_mb
    host=$(hostname -s)
    cpus=$(nproc)
    mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/munge"
    cat >"$CONF.tmp" <<EOF
# Written by scripts/slurm_local.sh: a one-node cluster for adapter-tui's tests.
ClusterName=adapterlocal
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
# No cgroups in a container: processes are tracked by their parent chain.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
# Fast turnarounds for tests: SIGTERM to SIGKILL in 5 s at a time limit or scancel, finished
# jobs visible to scontrol for 10 minutes.
KillWait=5
MinJobAge=600
OverTimeLimit=0
InactiveLimit=0
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    mv "$CONF.tmp" "$CONF"
    if [[ ! -e $ETC_CONF || ( -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ) ]]; then
        mkdir -p "$(dirname "$ETC_CONF")"
        ln -sfn "$CONF" "$ETC_CONF"
    elif [[ ${SLURM_CONF:-} != "$CONF" ]]; then
        echo "slurm_local.sh: $ETC_CONF is another cluster's; export SLURM_CONF=$CONF to use this one" >&2
    fi
}

node_up() {  # the node is idle, mixed or allocated: it takes jobs
    SLURM_CONF=$CONF sinfo -h -p "$PARTITION" -o %t 2>/dev/null | grep -Eq '^(idle|mix|alloc)'
}

start() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null \
        || die "Slurm is not installed; apt-get install -y slurm-wlm munge"
    [[ $(id -u) == 0 ]] || die "run as root (the daemons run as root here)"
    if alive "$DIR/munged.pid" && alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid"; then
        node_up || wait_for "the node" node_up
        echo "slurm_local.sh: already running (config $CONF)"
        return 0
    fi
    write_config
    if ! alive "$DIR/munged.pid"; then
        [[ -s $DIR/munge/munge.key ]] || mungekey --create --keyfile="$DIR/munge/munge.key" --force
        chmod 700 "$DIR/munge"
        chmod 400 "$DIR/munge/munge.key"
        munged --force --socket="$DIR/munge/munge.socket.2" --key-file="$DIR/munge/munge.key" \
            --pid-file="$DIR/munged.pid" --log-file="$DIR/munged.log" --seed-file="$DIR/munge/munged.seed"
        wait_for "munged" alive "$DIR/munged.pid"
    fi
    alive "$DIR/slurmctld.pid" || SLURM_CONF=$CONF slurmctld -f "$CONF" -i
    wait_for "slurmctld" env SLURM_CONF="$CONF" scontrol ping
    alive "$DIR/slurmd.pid" || SLURM_CONF=$CONF slurmd -f "$CONF"
    wait_for "the node" node_up
    echo "slurm_local.sh: running, partition $PARTITION on $(hostname -s) (config $CONF)"
}

stop() {
    local name pid
    for name in slurmd slurmctld munged; do
        if alive "$DIR/$name.pid"; then
            pid=$(cat "$DIR/$name.pid")
            kill "$pid"
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        fi
    done
    if [[ -L $ETC_CONF && $(readlink "$ETC_CONF") == "$CONF" ]]; then rm -f "$ETC_CONF"; fi
    rm -rf "$DIR"
    echo "slurm_local.sh: stopped"
}

status() {
    local name up=0
    for name in munged slurmctld slurmd; do
        if alive "$DIR/$name.pid"; then echo "$name: running (pid $(cat "$DIR/$name.pid"))"
        else echo "$name: not running"; up=3; fi
    done
    if [[ $up == 0 ]] && node_up; then
        SLURM_CONF=$CONF sinfo -p "$PARTITION"
    else
        up=3
    fi
    return $up
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: scripts/slurm_local.sh start|stop|status" >&2; exit 2 ;;
esac
