#!/bin/sh
# gapship-profile on|off|status [--shell SHELL]
# Activate this environment at every login: `on` adds one marked block to the login files of
# your shell ($SHELL, or --shell), `off` removes exactly that block from every login file
# (whichever shell it was added for), `status` lists where it is. Running `on` twice leaves
# one block. POSIX sh; nothing is written without `on`.
{
set -u
here=$(cd "$(dirname -- "$0")/.." && pwd -P)
me=gapship-profile
die() { printf '%s: %s\n' "$me" "$*" >&2; exit 2; }
[ -f "$here/gapship/manifest.json" ] || die "$here does not look like a gapship environment (gapship/manifest.json is missing)."
[ -n "${HOME:-}" ] || die "HOME is not set, so there are no login files to change."
name=$(cat "$here/gapship/name" 2>/dev/null || basename "$here")

action=${1-}
[ $# -eq 0 ] || shift
shell=$(basename "${SHELL:-sh}")
while [ $# -gt 0 ]; do
    case $1 in
        --shell) [ $# -ge 2 ] || die "--shell needs a name (sh, bash, zsh, ksh, csh, tcsh or fish)."; shell=$(basename "$2"); shift ;;
        --shell=*) shell=$(basename "${1#--shell=}") ;;
        *) die "unknown option '$1'. Use: gapship-profile on|off|status [--shell SHELL]" ;;
    esac
    shift
done

# single-quoted for sh and csh; fish escapes \ and ' inside single quotes
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
fish_quote() { printf "'%s'" "$(printf '%s' "$1" | sed -e 's/[\\]/\\\\/g' -e "s/'/\\\\'/g")"; }

fish_conf="${XDG_CONFIG_HOME:-$HOME/.config}/fish/conf.d/gapship-$name.fish"
begin_mark="# >>> gapship $name ($here) >>>"
end_mark="# <<< gapship $name ($here) <<<"

# the login files of a shell that `on` writes to
files_for() {
    case $1 in
        bash) echo "$HOME/.bashrc"
              if [ -f "$HOME/.bash_profile" ]; then echo "$HOME/.bash_profile"; else echo "$HOME/.profile"; fi ;;
        zsh) echo "$HOME/.zshrc" ;;
        tcsh) if [ -f "$HOME/.tcshrc" ]; then echo "$HOME/.tcshrc"; else echo "$HOME/.cshrc"; fi ;;
        csh) echo "$HOME/.cshrc" ;;
        fish) echo "$fish_conf" ;;
        sh|dash|ksh|ksh93|mksh|ash|busybox) echo "$HOME/.profile" ;;
        *) die "gapship does not know the login files of '$1'; use --shell sh, bash, zsh, ksh, csh, tcsh or fish." ;;
    esac
}
# every login file `off` and `status` look at
all_files() {
    for f in .profile .bashrc .bash_profile .zshrc .cshrc .tcshrc; do echo "$HOME/$f"; done
    echo "$fish_conf"
}

has_block() { [ -f "$1" ] && grep -qxF "$begin_mark" "$1"; }

# the file without this environment's block (through the same inode: a linked dotfile stays one)
remove_block() {
    tmp="$1.gapship-tmp"
    GAPSHIP_BEGIN=$begin_mark GAPSHIP_END=$end_mark awk '
        $0 == ENVIRON["GAPSHIP_BEGIN"] { skip = 1; next }
        skip && $0 == ENVIRON["GAPSHIP_END"] { skip = 0; next }
        !skip { print }' "$1" > "$tmp" || { rm -f "$tmp"; die "cannot write beside $1."; }
    cat "$tmp" > "$1" || { rm -f "$tmp"; die "cannot write $1."; }
    rm -f "$tmp"
    [ -s "$1" ] || rm -f "$1"
}

block_for() {
    case $1 in
        csh|tcsh) line="if ( -r $(quote "$here/activate.csh") ) source $(quote "$here/activate.csh")" ;;
        *) line="[ -r $(quote "$here/activate") ] && . $(quote "$here/activate")" ;;
    esac
    printf '%s\n%s\n%s\n%s\n' "$begin_mark" \
        "# added by gapship-profile on; remove it with: $here/bin/gapship-profile off" \
        "$line" "$end_mark"
}

case $action in
    on)
        files=$(files_for "$shell") || exit 2
        printf '%s\n' "$files" | while IFS= read -r f; do
            if [ "$shell" = fish ]; then
                mkdir -p "$(dirname "$f")" || die "cannot create $(dirname "$f")."
                printf '%s\n%s\n%s\n' "# gapship $name ($here): added by gapship-profile on; remove it with: $here/bin/gapship-profile off" \
                    "test -r $(fish_quote "$here/activate.fish"); and source $(fish_quote "$here/activate.fish")" \
                    > "$f" || die "cannot write $f."
            else
                ! has_block "$f" || remove_block "$f"
                block_for "$shell" >> "$f" || die "cannot write $f."
            fi
            echo "$me: $f activates $name at login."
        done || exit 2 ;;
    off)
        all_files | while IFS= read -r f; do
            if [ "$f" = "$fish_conf" ]; then
                [ -f "$f" ] || continue
                rm -f "$f" && echo "$me: removed $f."
            elif has_block "$f"; then
                remove_block "$f" && echo "$me: removed the block of $name from $f."
            fi
        done || exit 2 ;;
    status)
        all_files | while IFS= read -r f; do
            if { [ "$f" = "$fish_conf" ] && [ -f "$f" ]; } || has_block "$f"; then echo "$f"; fi
        done ;;
    *) die "use: gapship-profile on|off|status [--shell SHELL]" ;;
esac
exit 0
}
