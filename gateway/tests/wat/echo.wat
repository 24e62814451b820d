;; A tiny plugin of world odoo-gateway:plugin/plugin@0.1.0, written by hand so the host can be
;; tested without a Rust guest. It logs one line, then picks a behaviour from the payload's
;; first byte:
;;   'L' loops forever          'G' grows memory until refused, then traps
;;   'R' rejects the event      'U' traps (`unreachable`)
;;   anything else: one delivery to the default destination whose body is the payload.
(component
  ;; Memory and the allocator live in their own module so imports can be lowered against them.
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

  (import "odoo-gateway:plugin/log@0.1.0" (instance $log
    (type $l (enum "trace" "debug" "info" "warn" "error"))
    (export "level" (type $level (eq $l)))
    (export "log" (func (param "level" $level) (param "message" string)))))
  ;; EXTRA IMPORTS
  (alias export $log "log" (func $log-fn))
  (core func $log-lowered (canon lower (func $log-fn) (memory (core memory $m "memory"))))

  (core module $main
    (import "env" "memory" (memory 1))
    (import "host" "log" (func $log (param i32 i32 i32)))
    (data (i32.const 16) "handling event")
    (data (i32.const 32) "application/json")
    (data (i32.const 48) "no thanks")
    ;; 15 flat parameters: id, source, model, action (ptr, len each), record-id (tag, value),
    ;; received-at-ms, payload (ptr, len), headers (ptr, len). Results go through memory at 256.
    (func (export "handle")
      (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i64 i64)
      (param $payload i32) (param $payload-len i32) (param i32 i32)
      (result i32)
      (local $first i32)
      (call $log (i32.const 2) (i32.const 16) (i32.const 14))
      (if (local.get $payload-len)
        (then (local.set $first (i32.load8_u (local.get $payload)))))
      (if (i32.eq (local.get $first) (i32.const 76)) ;; 'L'
        (then (loop $spin (br $spin))))
      (if (i32.eq (local.get $first) (i32.const 71)) ;; 'G'
        (then
          (loop $more (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
          (unreachable)))
      (if (i32.eq (local.get $first) (i32.const 85)) ;; 'U'
        (then (unreachable)))
      (if (i32.eq (local.get $first) (i32.const 82)) ;; 'R': err(reject("no thanks"))
        (then
          (i32.store8 (i32.const 256) (i32.const 1))
          (i32.store8 (i32.const 260) (i32.const 0))
          (i32.store (i32.const 264) (i32.const 48))
          (i32.store (i32.const 268) (i32.const 9))
          (return (i32.const 256))))
      ;; ok([delivery { "", "application/json", payload, [] }]), the delivery at 272
      (i32.store8 (i32.const 256) (i32.const 0))
      (i32.store (i32.const 260) (i32.const 272))
      (i32.store (i32.const 264) (i32.const 1))
      (i32.store (i32.const 272) (i32.const 0))
      (i32.store (i32.const 276) (i32.const 0))
      (i32.store (i32.const 280) (i32.const 32))
      (i32.store (i32.const 284) (i32.const 16))
      (i32.store (i32.const 288) (local.get $payload))
      (i32.store (i32.const 292) (local.get $payload-len))
      (i32.store (i32.const 296) (i32.const 0))
      (i32.store (i32.const 300) (i32.const 0))
      (i32.const 256))
    (func (export "validate-config") (result i32)
      (i32.store8 (i32.const 320) (i32.const 0))
      (i32.const 320)))
  (core instance $i (instantiate $main
    (with "env" (instance $m))
    (with "host" (instance (export "log" (func $log-lowered))))))

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
