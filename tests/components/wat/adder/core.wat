;; Core module for the `adder` world: add(u32, u32) -> u32.
(module
  (func (export "add") (param i32 i32) (result i32)
    local.get 0
    local.get 1
    i32.add)
)
