;; Core module for the `hostile` world.
(module
  (memory (export "memory") 1)
  (global $count (mut i32) (i32.const 0))

  (func (export "spin")
    (loop $forever (br $forever)))

  ;; Named like Rust's alloc-error path so the runtime can tell a memory
  ;; bomb from any other abort.
  (func $handle_alloc_error
    unreachable)

  (func (export "bomb")
    (loop $more
      ;; grow by 1 MiB (16 pages) and touch the new memory
      (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1))
        (then (call $handle_alloc_error)))
      (i32.store (i32.sub (i32.shl (memory.size) (i32.const 16)) (i32.const 4))
                 (i32.const 1))
      (br $more)))

  (func (export "boom")
    unreachable)

  (func $recurse (export "recurse") (param $depth i32) (result i32)
    (i32.add (call $recurse (i32.add (local.get $depth) (i32.const 1)))
             (i32.const 1)))

  (func (export "counter") (result i32)
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (global.get $count))

  (func (export "ok") (result i32)
    i32.const 42)
)
