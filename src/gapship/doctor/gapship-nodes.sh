#!/bin/sh
# gapship-nodes: this environment on every node of a Slurm allocation.
#   gapship-nodes doctor [--json] [DOCTOR OPTIONS]   the doctor once per node, one table
#   gapship-nodes stage [--to DIR] [BUNDLE.run]      copy to node-local storage and install
#   gapship-nodes clean [--to DIR]                   remove what stage put there
# POSIX sh; needs Slurm's srun (and sbcast for stage) on PATH, inside an allocation.
here=$(cd "$(dirname -- "$0")/.." && pwd -P)
me=gapship-nodes
name=$(cat "$here/gapship/name" 2>/dev/null || echo env)
nodes=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-}}

usage() {
    cat <<EOF
usage: $me doctor [--json] [--quick] [--no-gpu] [--timeout S]
       $me stage [--to DIR] [BUNDLE.run]
       $me clean [--to DIR]
Runs inside a Slurm allocation (salloc, sbatch), once per node with srun.
  doctor   run $here/bin/gapship-doctor on every node; print the checks that differ
           between nodes and what fails on each; exit status of the worst node
  stage    copy BUNDLE.run (default: the image this environment was installed from, when it
           is one) to DIR on every node with sbcast and install it there; prints the line a
           job script sources. DIR: \$SLURM_TMPDIR, else /tmp/\$USER-gapship
  clean    remove from DIR on every node what stage installed
EOF
}

die() { echo "$me: $*" >&2; exit 2; }

need_slurm() {  # $1: the command line the user wanted
    command -v srun >/dev/null 2>&1 || die "srun not found: Slurm's commands are not on PATH here (a login node without Slurm, or a module to load first: module load slurm). Without Slurm, check this node alone: $here/bin/gapship-doctor"
    if [ -z "${SLURM_JOB_ID:-}" ] || [ -z "$nodes" ]; then
        echo "$me: not inside a Slurm allocation (SLURM_JOB_ID is not set). Get one, for example:" >&2
        echo "  salloc -N 4 --ntasks-per-node=1 $1" >&2
        echo "  or in an sbatch script: #SBATCH -N 4, then the same command" >&2
        exit 2
    fi
}

# one task per node
on_nodes() { srun --ntasks-per-node=1 -N "$nodes" --kill-on-bad-exit=0 "$@"; }

default_to() {
    if [ -n "${SLURM_TMPDIR:-}" ]; then echo "$SLURM_TMPDIR"
    else echo "/tmp/${USER:-$(id -un)}-gapship"; fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
    -h|--help|help) usage; exit 0 ;;
    doctor)
        json=
        for a in "$@"; do  # the doctor's own options go to every node's doctor; --json is ours
            shift
            if [ "$a" = --json ]; then json=--json; else set -- "$@" "$a"; fi
        done
        need_slurm "$here/bin/$me doctor"
        out=$(mktemp "${TMPDIR:-/tmp}/gapship-nodes.XXXXXX") || die "cannot create a temporary file in ${TMPDIR:-/tmp}"
        trap 'rm -f "$out"' EXIT
        trap 'exit 130' INT TERM
        [ -z "$json" ] && echo "$me: running the doctor on $nodes node(s) of job $SLURM_JOB_ID ..." >&2
        # its output labelled with the task number: gapship.node.nodes reads it
        # shellcheck disable=SC2016
        on_nodes --label sh -c '
            here=$1; shift
            node=${SLURMD_NODENAME:-$(hostname)}
            err=$(mktemp "${TMPDIR:-/tmp}/gapship-doctor.XXXXXX") || err=/dev/null
            report=$("$here/bin/gapship-doctor" --json "$@" 2>"$err"); rc=$?
            printf "@gapship-node %s %s\n%s\n@stderr\n" "$node" "$rc" "$report"
            [ "$err" != /dev/null ] && cat "$err" && rm -f "$err"
            echo @end' sh "$here" "$@" >"$out"
        rc=$?
        [ $rc -ne 0 ] && echo "$me: srun exited $rc; nodes without a report are listed below" >&2
        py=$here/bin/python3
        if [ ! -e "$py" ] && [ -x "$here/bin/gapship-mount" ]; then  # an image environment
            "$here/bin/gapship-mount" || exit 2
            py=$(sed -n 's/^mount=//p' "$here/gapship/image.conf")/bin/python3
        fi
        "$py" -I -c 'import sys; sys.path.insert(0, sys.argv[1]); from node.nodes import main; sys.exit(main(sys.argv[2:]))' \
            "$here/gapship" "$out" --nodes "$nodes" --job "$SLURM_JOB_ID" $json
        exit $? ;;
    stage|clean)
        to= bundle=
        while [ $# -gt 0 ]; do
            case $1 in
                --to) [ $# -ge 2 ] || die "--to needs a directory"; to=$2; shift ;;
                --to=*) to=${1#--to=} ;;
                -h|--help) usage; exit 0 ;;
                -*) die "unknown option $1 (see $me --help)" ;;
                *) [ "$cmd" = stage ] || die "clean takes no bundle"; bundle=$1 ;;
            esac
            shift
        done
        [ -n "$to" ] || to=$(default_to)
        case $to in /*) ;; *) die "--to must be an absolute path (it is made on every node): $to" ;; esac
        case $to in *:*|*' '*) die "--to cannot hold ':' or spaces: $to" ;; esac
        need_slurm "$here/bin/$me $cmd${bundle:+ $bundle}"
        ;;
    '') usage >&2; exit 2 ;;
    *) die "unknown command '$cmd' (doctor, stage or clean; see $me --help)" ;;
esac

if [ "$cmd" = clean ]; then
    echo "$me: removing gapship environments from $to on $nodes node(s) ..." >&2
    # shellcheck disable=SC2016
    on_nodes sh -c '
        to=$1; node=${SLURMD_NODENAME:-$(hostname)}
        [ -d "$to" ] || { echo "$node: nothing in $to"; exit 0; }
        for d in "$to"/*; do
            [ -e "$d" ] || continue
            if [ -f "$d/gapship/manifest.json" ]; then
                [ ! -x "$d/bin/gapship-umount" ] || "$d/bin/gapship-umount" >/dev/null  # an image
                rm -rf "$d" && echo "$node: removed $d"
            else case $d in *.run) rm -f "$d" && echo "$node: removed $d" ;;
                 *) echo "$node: left $d (not a gapship environment)" ;; esac
            fi
        done
        rmdir "$to" 2>/dev/null && echo "$node: removed $to"
        exit 0' sh "$to" >&2
    exit $?
fi

# stage
command -v sbcast >/dev/null 2>&1 || die "sbcast not found beside srun: Slurm's file broadcast is needed to copy the bundle to every node"
[ -n "$bundle" ] || die "name the bundle to stage: $me stage [--to DIR] NAME.run (the file you installed $here from)"
[ -f "$bundle" ] || die "no such bundle: $bundle"
base=$(basename -- "$bundle")
stem=${base%.run}
[ -n "$stem" ] && [ "$stem" != "$base" ] || die "$bundle is not a gapship bundle (NAME.run)"
prefix=$to/$stem
echo "$me: staging $base to $prefix on $nodes node(s) of job $SLURM_JOB_ID ..." >&2
on_nodes mkdir -p "$to" >&2 || die "could not create $to on every node (srun exited $?)"
# sbcast copies the file to every node of the job, through Slurm's tree of slurmds
sbcast --force --preserve "$bundle" "$to/$base" || die "sbcast could not copy $bundle to $to on every node (free space there? see the message above)"
# shellcheck disable=SC2016
on_nodes sh -c '
    run=$1 prefix=$2; node=${SLURMD_NODENAME:-$(hostname)}
    if log=$(sh "$run" --prefix "$prefix" --force 2>&1); then echo "$node: installed $prefix"; rc=0
    else rc=$?; echo "$node: FAIL install into $prefix:"; printf "%s\n" "$log" | tail -n 5; fi
    rm -f "$run"
    exit $rc' sh "$to/$base" "$prefix" >&2
rc=$?
if [ $rc -ne 0 ]; then
    echo "$me: the install failed on some node (above); nothing to source. Remove what is left: $here/bin/$me clean --to $to" >&2
    exit 1
fi
echo "$me: staged on every node; in the job script, source:" >&2
echo ". $prefix/activate"
