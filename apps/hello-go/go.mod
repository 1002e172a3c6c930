module example.org/hello-go

go 1.23

require github.com/google/uuid v1.3.0
