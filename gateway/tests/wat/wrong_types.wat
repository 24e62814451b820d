;; A component with both exports, but `handle` takes a string and returns a number.
(component
  (core module $main
    (memory (export "memory") 1)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
    (func (export "handle") (param i32 i32) (result i32) (i32.const 0))
    (func (export "validate-config") (result i32) (i32.const 0)))
  (core instance $i (instantiate $main))
  (func $handle (param "event" string) (result u32)
    (canon lift (core func $i "handle") (memory (core memory $i "memory")) (realloc (core func $i "realloc"))))
  (export "handle" (func $handle))
  (func $validate (result (result (error string)))
    (canon lift (core func $i "validate-config") (memory (core memory $i "memory"))))
  (export "validate-config" (func $validate))
)
