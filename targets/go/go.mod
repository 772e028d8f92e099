module alloctrace/targets/go

go 1.19
