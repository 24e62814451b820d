;; A component that exports only `validate-config`: not a plugin (no `handle`).
(component
  (core module $main
    (memory (export "memory") 1)
    (func (export "validate-config") (result i32) (i32.const 0)))
  (core instance $i (instantiate $main))
  (func $validate (result (result (error string)))
    (canon lift (core func $i "validate-config") (memory (core memory $i "memory"))))
  (export "validate-config" (func $validate))
)
