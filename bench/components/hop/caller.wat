;; bench:hop/entry.run(hops: u32, x: u64) -> u64: x = target.ping(x), `hops` times.
(module
  (import "bench:hop/target" "ping" (func $ping (param i64) (result i64)))
  (memory (export "memory") 1)
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 0))
  (func (export "bench:hop/entry#run") (param $hops i32) (param $x i64) (result i64)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $hops)))
        (local.set $x (call $ping (local.get $x)))
        (local.set $hops (i32.sub (local.get $hops) (i32.const 1)))
        (br $next)))
    (local.get $x)))
