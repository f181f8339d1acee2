#!/bin/sh
# Print the path of a Python 3.13+ interpreter: on PATH first, then under pyenv.
for candidate in python3.14 python3.13 python3 python; do
    path=$(command -v "$candidate" 2>/dev/null) || continue
    if "$path" -c 'import sys; sys.exit(sys.version_info < (3, 13))' 2>/dev/null; then
        echo "$path"; exit 0
    fi
done
root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
for path in $(ls -d "$root"/versions/3.1[3-9]*/bin/python3 2>/dev/null | sort -rV); do
    if "$path" -c 'import sys; sys.exit(sys.version_info < (3, 13))' 2>/dev/null; then
        echo "$path"; exit 0
    fi
done
echo "xiaoqu needs Python 3.13 or newer: install it (e.g. 'pyenv install 3.13' or your system's python3.13 package) and try again." >&2
exit 1
