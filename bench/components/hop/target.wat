;; bench:hop/target.ping(x: u64) -> u64 = x + 1 (canonical ABI: a u64 is one i64).
(module
  (memory (export "memory") 1)
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 0))
  (func (export "bench:hop/target#ping") (param $x i64) (result i64)
    (i64.add (local.get $x) (i64.const 1))))
