;; Core module for the `adder` world.
(module
  (func (export "add") (param i32 i32) (result i32)
    local.get 0
    local.get 1
    i32.add)
  (func (export "test:adder/math@0.1.0#mul") (param i32 i32) (result i32)
    local.get 0
    local.get 1
    i32.mul)
)
