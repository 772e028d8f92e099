#!/bin/sh
# A child, a subshell, then exec: three processes running the same program (`$1` is the
# marked binary), each with its own size.
"$1" 4101 11
( "$1" 4102 12; true )
exec "$1" 4103 13
