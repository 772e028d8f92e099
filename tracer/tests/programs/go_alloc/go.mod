module example.com/goalloc

go 1.19
