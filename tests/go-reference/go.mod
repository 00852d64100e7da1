module nsguard.dev/go-reference

go 1.19
