module alloctrace/tests/goprobe

go 1.19
