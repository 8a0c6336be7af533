#!/bin/sh
# write-activation.sh TREE PREFIX
# Write the files of an install that name its place (TREE/activate, TREE/gapship/prefix) for an
# environment whose final location is PREFIX. Used by the installer (TREE is the staging
# directory beside PREFIX) and by bin/gapship-rehome (TREE = PREFIX). POSIX sh.
set -eu
tree=$1
prefix=$2
name=$(cat "$tree/gapship/name")

# An environment for this machine's own Python (packed with --python target): link bin/python3
# to it; pyvenv.cfg (shipped) makes it use this environment's site-packages.
if [ -f "$tree/gapship/base-python" ]; then
    base=$(cat "$tree/gapship/base-python")
    if [ ! -x "$base" ]; then
        echo "gapship: this environment runs on $base, which is not on this machine. Install Python there, or pack again with --python standalone:3.X or --python twin." >&2
        exit 1
    fi
    for link in python3 python "$(basename "$base")"; do
        ln -sfn "$base" "$tree/bin/$link"
    done
fi

# Each shell's quoting, then escaping for a sed replacement. sh_quote escapes for inside '...'
# (activate.sh.in has the quotes); csh and fish words come with their quotes.
sh_quote() { printf '%s' "$1" | sed "s/'/'\\\\''/g"; }
csh_word() { printf "'%s'" "$(sh_quote "$1")"; }
fish_word() { printf "'%s'" "$(printf '%s' "$1" | sed -e 's/[\\]/\\\\/g' -e "s/'/\\\\'/g")"; }
# for "..." in sh and fish (the stub that every shell reads)
dq_escape() { printf '%s' "$1" | sed 's/[\\"$`]/\\&/g'; }
sed_escape() { printf '%s' "$1" | sed 's/[\\&|]/\\&/g'; }
as_is() { printf '%s' "$1"; }
# qv QUOTE VALUE: r=$(QUOTE "VALUE"), without a fork where VALUE holds nothing that a quoting
# escapes (the usual path: an install writes four files of a dozen values each).
nl='
'
qv() {
    case $2 in
        *[\'\\\"\$\`\&\|]*|*"$nl"*) r=$($1 "$2") ;;
        *) case $1 in
               csh_word|fish_word) r="'$2'" ;;
               *) r=$2 ;;
           esac ;;
    esac
}
# qe QUOTE VALUE: r=$(sed_escape "$(QUOTE "VALUE")"), forking only where a character needs it
qe() {
    qv "$1" "$2"
    case $r in *[\\\&\|]*|*"$nl"*) r=$(sed_escape "$r") ;; esac
}

# The GPU stack (gapship/activate.conf, prefix-relative, written at pack time): CUDA_HOME,
# a dir for PATH, dirs for LD_LIBRARY_PATH, XLA's CUDA data dir.
cuda= cuda_bin= ld= xla= gpu_vars= ld_last_first=
conf="$tree/gapship/activate.conf"
if [ -f "$conf" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
        val=$prefix/${line#*=}
        case $line in
            cuda_home=*) cuda=$val; gpu_vars="CUDA_HOME CUDA_PATH LD_LIBRARY_PATH" ;;
            path=*) cuda_bin=$val ;;
            ld_library_path=*) ld="$ld${ld:+:}$val"
                # each prepend of a modulefile goes in front: the last dir first
                ld_last_first="$val
$ld_last_first" ;;
            xla_cuda_data_dir=*) xla=$val; gpu_vars="$gpu_vars XLA_FLAGS" ;;
        esac
    done < "$conf"
    case $prefix in
        *:*) echo "gapship: $prefix holds ':', which PATH and LD_LIBRARY_PATH cannot name; install with another --prefix." >&2
             exit 2 ;;
        *' '*) [ -z "$xla" ] || echo "gapship: XLA_FLAGS cannot name $prefix (it holds a space), so JAX may not find ptxas; install with another --prefix if it fails." >&2 ;;
    esac
fi

# Activation files: activate (read by every shell; sends sh to gapship/activation/activate.sh
# and tells csh and fish users their file), activate.csh, activate.fish.
shipped="$tree/gapship/activation"
helper="$prefix/gapship/libexec/ld-library-path.sh"
# a path that a message may show as it is in sh, csh and fish, or the word PREFIX
case $prefix in *[\\\"\$\`!\']*) shown=PREFIX ;; *) shown=$prefix ;; esac
p_disp=$(sed_escape "$prefix" | tr '\n' ' ')

# fill TEMPLATE OUT QUOTE: the placeholders, each value quoted by the function QUOTE
fill() {
    q=$3
    qe "$q" "$prefix"; v_prefix=$r
    qe "$q" "$name"; v_name=$r
    qe "$q" "$cuda"; v_cuda=$r
    qe "$q" "$cuda_bin"; v_cuda_bin=$r
    qe "$q" "$ld"; v_ld=$r
    qe "$q" "$xla"; v_xla=$r
    qe "$q" "$helper"; v_helper=$r
    qv csh_word "$prefix/activate.csh"
    qe "$q" "setenv GAPSHIP_ISOLATE 1; source $r"; v_csh_isolate=$r
    qv fish_word "$prefix/activate.fish"
    qe "$q" "GAPSHIP_ISOLATE=1 source $r"; v_fish_isolate=$r
    qe dq_escape "$prefix/gapship/activation/activate.sh"; v_sh_file=$r
    qe as_is "$shown/activate.csh"; v_csh_file=$r
    qe as_is "$shown/activate.fish"; v_fish_file=$r
    sed -e "s|__GAPSHIP_PREFIX__|$v_prefix|g" \
        -e "s|__GAPSHIP_NAME__|$v_name|g" \
        -e "s|__GAPSHIP_PREFIX_DISPLAY__|$p_disp|g" \
        -e "s|__GAPSHIP_CUDA_HOME__|$v_cuda|g" \
        -e "s|__GAPSHIP_CUDA_BIN__|$v_cuda_bin|g" \
        -e "s|__GAPSHIP_LD_LIBRARY_PATH__|$v_ld|g" \
        -e "s|__GAPSHIP_XLA_DATA_DIR__|$v_xla|g" \
        -e "s|__GAPSHIP_GPU_VARS__|$gpu_vars|g" \
        -e "s|__GAPSHIP_LD_HELPER__|$v_helper|g" \
        -e "s|__GAPSHIP_CSH_ISOLATE__|$v_csh_isolate|g" \
        -e "s|__GAPSHIP_FISH_ISOLATE__|$v_fish_isolate|g" \
        -e "s|__GAPSHIP_SH_FILE__|$v_sh_file|g" \
        -e "s|__GAPSHIP_CSH_FILE__|$v_csh_file|g" \
        -e "s|__GAPSHIP_FISH_FILE__|$v_fish_file|g" \
        "$1" > "$2.gapship-tmp"
    mv -f "$2.gapship-tmp" "$2"
}
fill "$shipped/activate.sh.in" "$shipped/activate.sh" sh_quote
fill "$shipped/activate.csh.in" "$tree/activate.csh" csh_word
fill "$shipped/activate.fish.in" "$tree/activate.fish" fish_word
fill "$shipped/activate.in" "$tree/activate" sh_quote

# Modulefiles: the same variables for `module use PREFIX/modulefiles; module load NAME`.
# Lmod reads NAME/VERSION.lua (pushenv: unload gives back a site module's CUDA_HOME);
# Environment Modules, 3.2 included, read the Tcl NAME/VERSION (setenv: unload unsets).
# One writer, FORMAT lua or tcl; values are Lua long strings or Tcl braced words.
modulefile() {
    fmt=$1
    q() { if [ "$fmt" = lua ]; then printf '[==[%s]==]' "$1"; else printf '{%s}' "$1"; fi; }
    say() { printf '%s\n' "$1"; }
    prepend() { [ "$fmt" = lua ] && say "prepend_path(\"$1\", $(q "$2"))" || say "prepend-path $1 $(q "$2")"; }
    set_var() { [ "$fmt" = lua ] && say "setenv(\"$1\", $(q "$2"))" || say "setenv $1 $(q "$2")"; }
    push_var() { [ "$fmt" = lua ] && say "pushenv(\"$1\", $(q "$2"))" || say "setenv $1 $(q "$2")"; }
    what="gapship environment $name $version: module use $prefix/modulefiles; module load $name"
    if [ "$fmt" = lua ]; then
        say "-- $what"
        say "whatis($(q "$name $version: a gapship environment"))"
        say 'family("gapship")'
        say 'pushenv("PYTHONHOME", false)'
    else
        say "#%Module1.0"
        say "## $what"
        say "module-whatis $(q "$name $version: a gapship environment")"
        say "unsetenv PYTHONHOME"
    fi
    [ -z "$cuda_bin" ] || prepend PATH "$cuda_bin"
    prepend PATH "$prefix/bin"
    set_var GAPSHIP_PREFIX "$prefix"
    set_var GAPSHIP_ENV "$name"
    [ -n "$cuda" ] || return 0
    push_var CUDA_HOME "$cuda"
    push_var CUDA_PATH "$cuda"
    printf '%s' "$ld_last_first" | while IFS= read -r dir; do prepend LD_LIBRARY_PATH "$dir"; done
    [ -n "$xla" ] || return 0
    if [ "$fmt" = lua ]; then
        say "append_path{\"XLA_FLAGS\", $(q "--xla_gpu_cuda_data_dir=$xla"), delim=\" \"}"
    else
        say "append-path -d { } XLA_FLAGS $(q "--xla_gpu_cuda_data_dir=$xla")"
    fi
}
version=$(cat "$tree/gapship/version" 2>/dev/null || echo default)
mods="$tree/modulefiles/$name"
mkdir -p "$mods"
modulefile lua > "$mods/$version.lua.tmp"
modulefile tcl > "$mods/$version.tmp"
mv -f "$mods/$version.lua.tmp" "$mods/$version.lua"
mv -f "$mods/$version.tmp" "$mods/$version"
printf '%s\n' "$prefix" > "$tree/gapship/prefix.tmp"
mv -f "$tree/gapship/prefix.tmp" "$tree/gapship/prefix"
