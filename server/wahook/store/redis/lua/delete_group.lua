-- ARGV: P, group. Returns 1 when deleted, 0 when absent.
return delete_group(ARGV[2])
