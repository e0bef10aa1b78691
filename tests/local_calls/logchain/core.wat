;; logchain: runner.run(s) logs "relaying" (wasi:logging, answered by the worker), then calls
;; next.call(s) (answered over the lattice) and returns its answer.
(module
  (import "wasi:logging/logging@0.1.0-draft" "log" (func $log (param i32 i32 i32 i32 i32)))
  (import "test:chain/next" "call" (func $call (param i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 100) "logchain")
  (data (i32.const 120) "relaying")

  (func (export "cabi_realloc")
        (param $old i32) (param $old_size i32) (param $align i32) (param $new_size i32)
        (result i32)
    (local $ptr i32)
    (local.set $ptr
      (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
               (i32.xor (i32.sub (local.get $align) (i32.const 1)) (i32.const -1))))
    (global.set $heap (i32.add (local.get $ptr) (local.get $new_size)))
    (block $fits
      (loop $grow
        (br_if $fits (i32.le_u (global.get $heap)
                               (i32.shl (memory.size) (i32.const 16))))
        (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1))
          (then unreachable))
        (br $grow)))
    (if (local.get $old)
      (then (memory.copy (local.get $ptr) (local.get $old) (local.get $old_size))))
    (local.get $ptr))

  (func (export "test:chain/runner#run") (param $ptr i32) (param $len i32) (result i32)
    ;; level 2 = info
    (call $log (i32.const 2) (i32.const 100) (i32.const 8) (i32.const 120) (i32.const 8))
    (call $call (local.get $ptr) (local.get $len) (i32.const 16))
    (i32.const 16))
)
