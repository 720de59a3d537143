module wahook.dev/bench/floor

go 1.22
