module kiln.dev/probe

go 1.19
