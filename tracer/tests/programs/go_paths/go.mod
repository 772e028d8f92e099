module example.com/gopaths

go 1.19
