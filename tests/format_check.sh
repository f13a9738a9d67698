#!/bin/sh
# tests/format_check.sh SRCDIR — the house style (SRCDIR/.clang-format) holds
# for every C file and header in src/, include/ and cli/.  Exit 77 (skipped)
# when clang-format is not installed (make deps installs it).
cd "${1:-.}" || exit 1
command -v clang-format >/dev/null 2>&1 || { echo "clang-format not installed: skipped"; exit 77; }
files=$(ls src/*.c src/*.h include/*.h cli/*.c)
if clang-format --dry-run --Werror $files; then
	echo "format_check: $(echo $files | wc -w) files follow .clang-format"
else
	echo "format_check: run clang-format -i on the files above"
	exit 1
fi
