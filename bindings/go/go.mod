module carbonlite

go 1.21
