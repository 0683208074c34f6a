# Sourced by the scripts that make or use the project's venvs.
#
# A venv is tied to the folder it was made in: its scripts' #! lines name its
# python by absolute path.  One that was moved or copied with the checkout, or
# whose python no longer runs (its CPython removed or rebuilt), is deleted so
# that the caller makes it again.
venv_works() {  # venv_works DIR: 0 when DIR is a venv made right there that runs
    local dir="$1" here real
    here="$(cd "$dir" && pwd)"; real="$(cd "$dir" && pwd -P)"
    [ -x "$dir/bin/python" ] || return 1
    [ "$("$dir/bin/python" -c 'import os, sys; print(os.path.realpath(sys.prefix))' 2>/dev/null)" = "$real" ] || return 1
    # pip's "#!" names the venv's own interpreter: bin/python (CPython) or bin/pypy3 (PyPy)
    head -n 2 "$dir/bin/pip" 2>/dev/null | grep -qF -e "$here/bin/python" -e "$real/bin/python" \
        -e "$here/bin/pypy" -e "$real/bin/pypy"
}

drop_broken_venv() {  # drop_broken_venv DIR
    if [ -d "$1" ] && ! venv_works "$1"; then
        echo "setup: $1 was made in another folder or no longer runs; making it again" >&2
        rm -rf "$1"
    fi
}

# The interpreters the package is installed into and tested under: the CPythons
# of scripts/pythons (pyenv's), then the PyPys of scripts/pypys (Debian's).
interpreters() {
    cat scripts/pythons scripts/pypys | tr ' ' '\n' | grep -v '^$'
}

interpreter() {  # interpreter NAME: the path of that interpreter's python
    case "$1" in
        pypy*) command -v "$1" ;;
        *) local prefix; prefix=$(pyenv prefix "$1" 2>/dev/null) && echo "$prefix/bin/python" ;;
    esac
}
