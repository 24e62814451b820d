;; A plugin whose instance has two linear memories, each in its own core module, for the
;; memory limit: `handle` grows each memory by as many MiB as the payload's first byte says
;; ('0' to '9'), then returns no deliveries. A growth the host refuses traps.
(component
  (core module $mem
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 4096))
    (func (export "realloc") (param i32 i32) (param $align i32) (param $size i32) (result i32)
      (local $p i32)
      (local.set $p
        (i32.and
          (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get $align))))
      (global.set $heap (i32.add (local.get $p) (local.get $size)))
      (block $fits
        (br_if $fits
          (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
        (drop (memory.grow
          (i32.add (i32.const 1)
            (i32.shr_u
              (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
              (i32.const 16))))))
      (local.get $p)))
  (core instance $m (instantiate $mem))

  (core module $second
    (memory 1)
    (func (export "grow") (param $pages i32) (result i32)
      (memory.grow (local.get $pages))))
  (core instance $s (instantiate $second))

  (core module $main
    (import "env" "memory" (memory 1))
    (import "second" "grow" (func $grow-second (param i32) (result i32)))
    (func (export "handle")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i64 i64)
      (param $payload i32) (param $payload-len i32) (param i32 i32)
      (result i32)
      (local $pages i32)
      ;; 16 pages of 64 KiB per MiB.
      (local.set $pages
        (i32.mul (i32.sub (i32.load8_u (local.get $payload)) (i32.const 48)) (i32.const 16)))
      (if (i32.eq (memory.grow (local.get $pages)) (i32.const -1))
        (then (unreachable)))
      (if (i32.eq (call $grow-second (local.get $pages)) (i32.const -1))
        (then (unreachable)))
      ;; ok([])
      (i32.store8 (i32.const 256) (i32.const 0))
      (i32.store (i32.const 260) (i32.const 0))
      (i32.store (i32.const 264) (i32.const 0))
      (i32.const 256))
    (func (export "validate-config") (result i32)
      (i32.store8 (i32.const 320) (i32.const 0))
      (i32.const 320)))
  (core instance $i (instantiate $main
    (with "env" (instance $m))
    (with "second" (instance $s))))

  (type $headers (list (tuple string string)))
  (type $event-def (record
    (field "id" string)
    (field "source" string)
    (field "model" string)
    (field "action" string)
    (field "record-id" (option s64))
    (field "received-at-ms" u64)
    (field "payload" string)
    (field "headers" $headers)))
  (export $event "event" (type $event-def))
  (type $delivery-def (record
    (field "destination" string)
    (field "content-type" string)
    (field "body" (list u8))
    (field "headers" $headers)))
  (export $delivery "delivery" (type $delivery-def))
  (type $error-def (variant
    (case "reject" string)
    (case "retry" string)
    (case "invalid-config" string)))
  (export $error "plugin-error" (type $error-def))

  (func $handle (param "event" $event) (result (result (list $delivery) (error $error)))
    (canon lift (core func $i "handle") (memory (core memory $m "memory")) (realloc (core func $m "realloc"))))
  (export "handle" (func $handle))
  (func $validate (result (result (error string)))
    (canon lift (core func $i "validate-config") (memory (core memory $m "memory")) (realloc (core func $m "realloc"))))
  (export "validate-config" (func $validate))
)
