#!/usr/bin/env bash
# launch.sh: starts a data-parallel run of one of this repository's binaries
# (docs/DISTRIBUTED.md).
#
# One node, N processes (runs torchrun, which restarts lost workers):
#   tools/launch.sh --nproc=2 [--max_restarts=2] [--port=29500] [--log_dir=DIR] \
#       -- bazel-bin/tools/timebalance --config=X.pbtxt --run_dir=runs/x --resume
#
# Several nodes under Slurm (prints an sbatch script; nothing is started):
#   tools/launch.sh --slurm --nodes=8 --nproc=8 [--gpus] [--cpus_per_task=6] \
#       [--time=48:00:00] [--partition=P] -- bazel-bin/tools/timebalance ... > job.sbatch
#   sbatch job.sbatch
#
# The binary reads who it is from the environment torchrun or srun sets
# (RANK/WORLD_SIZE/... or SLURM_PROCID/SLURM_NTASKS/...). --resume belongs
# in the binary's flags whenever restarts are allowed: a restarted worker
# continues from the run directory's last checkpoint.
#
# Exit codes: torchrun's (0 when every worker finished); 2 for bad flags.
set -euo pipefail

usage() {
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

nproc=1
nodes=1
max_restarts=0
port=29500
log_dir=""
slurm=0
gpus=0
cpus_per_task=""
time_limit="24:00:00"
partition=""
while [ $# -gt 0 ]; do
  case "$1" in
    --nproc=*) nproc="${1#*=}" ;;
    --nodes=*) nodes="${1#*=}" ;;
    --max_restarts=*) max_restarts="${1#*=}" ;;
    --port=*) port="${1#*=}" ;;
    --log_dir=*) log_dir="${1#*=}" ;;
    --slurm) slurm=1 ;;
    --gpus) gpus=1 ;;
    --cpus_per_task=*) cpus_per_task="${1#*=}" ;;
    --time=*) time_limit="${1#*=}" ;;
    --partition=*) partition="${1#*=}" ;;
    -h|--help) usage ;;
    --) shift; break ;;
    *) echo "launch.sh: unknown flag \"$1\" (the binary's flags go after --)" >&2; exit 2 ;;
  esac
  shift
done
[ $# -gt 0 ] || { echo "launch.sh: no binary after --" >&2; exit 2; }
for v in nproc nodes max_restarts port; do
  [[ "${!v}" =~ ^[0-9]+$ ]] && [ "${!v}" -ge 0 ] \
    || { echo "launch.sh: --$v=${!v} is not a non-negative integer" >&2; exit 2; }
done
[ "$nproc" -ge 1 ] && [ "$nodes" -ge 1 ] || { echo "launch.sh: --nproc and --nodes must be >= 1" >&2; exit 2; }

if [ "$slurm" -eq 0 ] && [ "$nodes" -gt 1 ]; then
  echo "launch.sh: --nodes=$nodes needs --slurm (torchrun here starts one node's workers)" >&2
  exit 2
fi

quote() { printf '%q ' "$@"; }

if [ "$slurm" -eq 1 ]; then
  # One task per process; SLURM_PROCID is the rank, the first node of the
  # allocation hosts the rendezvous store on MASTER_PORT.
  cat <<EOF
#!/usr/bin/env bash
#SBATCH --job-name=timebalance
#SBATCH --nodes=$nodes
#SBATCH --ntasks-per-node=$nproc
#SBATCH --time=$time_limit
EOF
  [ -n "$cpus_per_task" ] && echo "#SBATCH --cpus-per-task=$cpus_per_task"
  [ "$gpus" -eq 1 ] && echo "#SBATCH --gpus-per-node=$nproc"
  [ -n "$partition" ] && echo "#SBATCH --partition=$partition"
  cat <<EOF
#SBATCH --output=slurm-%j.out
set -euo pipefail
export MASTER_PORT=$port
# Requeued or restarted jobs continue from the run directory's last
# checkpoint when the binary is given --resume.
srun --kill-on-bad-exit=1 $(quote "$@")
EOF
  exit 0
fi

command -v torchrun >/dev/null || { echo "launch.sh: torchrun not found (python3-torch)" >&2; exit 2; }
if [ -z "$log_dir" ]; then log_dir="$(mktemp -d "${TMPDIR:-/tmp}/torchrun_logs.XXXXXX")"; fi
# --redirects=1 --tee=1: Debian's torchrun (1.13 on Python 3.11) crashes at
# start with its default --redirects=0; with these, each worker's output
# still reaches this terminal and is kept under --log_dir.
exec torchrun --no_python --nnodes=1 --nproc_per_node="$nproc" --max_restarts="$max_restarts" \
  --master_addr=127.0.0.1 --master_port="$port" --redirects=1 --tee=1 --log_dir="$log_dir" "$@"
