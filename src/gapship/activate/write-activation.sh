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

# single-quote for sh, then escape for a sed replacement
sh_quote() { printf '%s' "$1" | sed "s/'/'\\\\''/g"; }
sed_escape() { printf '%s' "$1" | sed 's/[\\&|]/\\&/g'; }
# a Lua long string and a Tcl braced word, for the modulefiles
lua_q() { printf '[==[%s]==]' "$1"; }
tcl_q() { printf '{%s}' "$1"; }
emit() { printf '%s\n' "$*"; }

# The GPU stack (gapship/activate.conf, prefix-relative, written at pack time): CUDA_HOME,
# a dir for PATH, dirs for LD_LIBRARY_PATH, XLA's CUDA data dir.
cuda= cuda_bin= ld= xla= gpu_vars= lua_ld= tcl_ld=
conf="$tree/gapship/activate.conf"
if [ -f "$conf" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
        val=$prefix/${line#*=}
        case $line in
            cuda_home=*) cuda=$val; gpu_vars="CUDA_HOME CUDA_PATH LD_LIBRARY_PATH" ;;
            path=*) cuda_bin=$val ;;
            ld_library_path=*) ld="$ld${ld:+:}$val"
                lua_ld="prepend_path(\"LD_LIBRARY_PATH\", $(lua_q "$val"))
$lua_ld"
                tcl_ld="prepend-path LD_LIBRARY_PATH $(tcl_q "$val")
$tcl_ld" ;;
            xla_cuda_data_dir=*) xla=$val; gpu_vars="$gpu_vars XLA_FLAGS" ;;
        esac
    done < "$conf"
    case $prefix in
        *:*) echo "gapship: $prefix holds ':', which PATH and LD_LIBRARY_PATH cannot name; install with another --prefix." >&2
             exit 2 ;;
        *' '*) [ -z "$xla" ] || echo "gapship: XLA_FLAGS cannot name $prefix (it holds a space), so JAX may not find ptxas; install with another --prefix if it fails." >&2 ;;
    esac
fi

p_sh=$(sed_escape "$(sh_quote "$prefix")")
n_sh=$(sed_escape "$(sh_quote "$name")")
p_disp=$(sed_escape "$prefix" | tr '\n' ' ')

tmp="$tree/activate.gapship-tmp"
sed -e "s|__GAPSHIP_PREFIX__|$p_sh|g" -e "s|__GAPSHIP_NAME__|$n_sh|g" \
    -e "s|__GAPSHIP_PREFIX_DISPLAY__|$p_disp|g" \
    -e "s|__GAPSHIP_CUDA_HOME__|$(sed_escape "$(sh_quote "$cuda")")|g" \
    -e "s|__GAPSHIP_CUDA_BIN__|$(sed_escape "$(sh_quote "$cuda_bin")")|g" \
    -e "s|__GAPSHIP_LD_LIBRARY_PATH__|$(sed_escape "$(sh_quote "$ld")")|g" \
    -e "s|__GAPSHIP_XLA_DATA_DIR__|$(sed_escape "$(sh_quote "$xla")")|g" \
    -e "s|__GAPSHIP_GPU_VARS__|$gpu_vars|g" \
    "$tree/gapship/activation/activate.sh.in" > "$tmp"
mv -f "$tmp" "$tree/activate"

# Modulefiles: the same variables for `module use PREFIX/modulefiles; module load NAME`.
# Lmod reads NAME/VERSION.lua (pushenv: unload gives back a site module's CUDA_HOME);
# Environment Modules, 3.2 included, read the Tcl NAME/VERSION.
version=$(cat "$tree/gapship/version" 2>/dev/null || echo default)
mods="$tree/modulefiles/$name"
mkdir -p "$mods"
{
    emit "-- gapship environment $name $version: module use $prefix/modulefiles; module load $name"
    emit "-- Written at install time (and by bin/gapship-rehome); module unload takes it all away."
    emit "whatis($(lua_q "$name $version: a gapship environment"))"
    emit 'family("gapship")'
    [ -z "$cuda_bin" ] || emit "prepend_path(\"PATH\", $(lua_q "$cuda_bin"))"
    emit "prepend_path(\"PATH\", $(lua_q "$prefix/bin"))"
    emit 'pushenv("PYTHONHOME", false)'
    emit "setenv(\"GAPSHIP_PREFIX\", $(lua_q "$prefix"))"
    emit "setenv(\"GAPSHIP_ENV\", $(lua_q "$name"))"
    if [ -n "$cuda" ]; then
        emit "pushenv(\"CUDA_HOME\", $(lua_q "$cuda"))"
        emit "pushenv(\"CUDA_PATH\", $(lua_q "$cuda"))"
        printf '%s' "$lua_ld"
        [ -z "$xla" ] || emit "append_path{\"XLA_FLAGS\", $(lua_q "--xla_gpu_cuda_data_dir=$xla"), delim=\" \"}"
    fi
} > "$mods/$version.lua.tmp"
{
    emit "#%Module1.0"
    emit "## gapship environment $name $version: module use $prefix/modulefiles; module load $name"
    emit "module-whatis $(tcl_q "$name $version: a gapship environment")"
    [ -z "$cuda_bin" ] || emit "prepend-path PATH $(tcl_q "$cuda_bin")"
    emit "prepend-path PATH $(tcl_q "$prefix/bin")"
    emit "unsetenv PYTHONHOME"
    emit "setenv GAPSHIP_PREFIX $(tcl_q "$prefix")"
    emit "setenv GAPSHIP_ENV $(tcl_q "$name")"
    if [ -n "$cuda" ]; then
        emit "setenv CUDA_HOME $(tcl_q "$cuda")"
        emit "setenv CUDA_PATH $(tcl_q "$cuda")"
        printf '%s' "$tcl_ld"
        [ -z "$xla" ] || emit "append-path -d { } XLA_FLAGS $(tcl_q "--xla_gpu_cuda_data_dir=$xla")"
    fi
} > "$mods/$version.tmp"
mv -f "$mods/$version.lua.tmp" "$mods/$version.lua"
mv -f "$mods/$version.tmp" "$mods/$version"
printf '%s\n' "$prefix" > "$tree/gapship/prefix.tmp"
mv -f "$tree/gapship/prefix.tmp" "$tree/gapship/prefix"
