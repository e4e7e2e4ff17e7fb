module mtlskit/goverify

go 1.19
