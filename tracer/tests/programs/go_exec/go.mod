module alloctrace/tests/goexec

go 1.19
