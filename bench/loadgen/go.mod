module wahook.dev/bench/loadgen

go 1.22
