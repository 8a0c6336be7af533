#!/bin/sh
# ld-library-path.sh: LD_LIBRARY_PATH for the activation files of every shell (sh, csh, fish).
# Reads the environment:
#   LD_LIBRARY_PATH    as the user has it (set or not)
#   _GAPSHIP_PREFIX    the environment's place
#   _GAPSHIP_LD        its dirs for LD_LIBRARY_PATH, ':'-separated (may be empty)
#   GAPSHIP_ISOLATE    non-empty: leave another CUDA or cuDNN out
#   _GAPSHIP_ISOLATE_HOW  the line that activates with GAPSHIP_ISOLATE in the user's shell
#   _GAPSHIP_SAY_ON_STDOUT  non-empty: the warning follows the value on stdout (fish does not
#                      redirect the stderr of a command substitution with that of `source`)
# Prints the new value, or "-" when LD_LIBRARY_PATH stays as it is; says on stderr, in one
# line, when another CUDA or cuDNN on LD_LIBRARY_PATH can shadow this environment's.
prefix=$_GAPSHIP_PREFIX
ld=${_GAPSHIP_LD-}
isolate=${GAPSHIP_ISOLATE-}
keep= kept= shadow=
rest=${LD_LIBRARY_PATH-}
more=${LD_LIBRARY_PATH:+x}
while [ -n "$more" ]; do
    case $rest in
        *:*) d=${rest%%:*}; rest=${rest#*:} ;;
        *) d=$rest; more= ;;
    esac
    drop=
    case $d in
        ''|"$prefix"|"$prefix"/*) ;;
        *)  case $(command ls -1 "$d" 2>/dev/null) in
                *libcudart.so*|*libcudnn*.so*|*libcublas.so*)
                    shadow="$shadow${shadow:+ }$d"
                    drop=$isolate ;;
            esac ;;
    esac
    if [ -z "$drop" ]; then
        keep="$keep${kept:+:}$d"
        kept=1
    fi
done
said=
if [ -n "$shadow" ] && [ -n "$isolate" ]; then
    said="gapship: left $shadow out of LD_LIBRARY_PATH (another CUDA or cuDNN); deactivate puts it back."
elif [ -n "$shadow" ]; then
    said="gapship: LD_LIBRARY_PATH holds another CUDA or cuDNN in $shadow, which can shadow this environment's; to leave it out: ${_GAPSHIP_ISOLATE_HOW-}"
fi
[ -z "$said" ] || [ -n "${_GAPSHIP_SAY_ON_STDOUT-}" ] || printf '%s\n' "$said" >&2
if [ -n "$ld" ] || [ "$keep" != "${LD_LIBRARY_PATH-}" ]; then
    printf '%s\n' "$ld${ld:+${keep:+:}}$keep"
else
    echo -
fi
[ -z "$said" ] || [ -z "${_GAPSHIP_SAY_ON_STDOUT-}" ] || printf '%s\n' "$said"
