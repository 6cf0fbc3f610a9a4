/// Element-wise loops over contiguous float buffers. Plain loops over unsafe pointers vectorise and reach
/// memory bandwidth; large tensors are split over the threads. Operations are values of operation types
/// (`UnaryFloatOp` below), never closures, so that the threaded loops inline them.
public enum Elementwise {
    /// `out = x` or `out += x`.
    @inlinable @inline(__always)
    public static func store(_ n: Int, _ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, accumulate: Bool) {
        if accumulate {
            Threads.chunks(n, Accumulate(x: x, out: out))
        } else if UnsafePointer(out) != x {
            // Split like any other loop: one memcpy does not use the second core (Add2's backward copies dy).
            Threads.chunks(n, Copy(x: x, out: out))
        }
    }

    /// Sets `n` floats to `value`.
    @inline(__always)
    public static func fill(_ n: Int, _ out: UnsafeMutablePointer<Float>, _ value: Float) {
        out.update(repeating: value, count: n)
    }
}

/// Element-wise operations as values of their own types rather than closures. The threaded loop that applies
/// one is a value too (`Map`, `Zip`, ... below; see `ParallelPart`), generic over the operation, so the
/// operation is specialised into the loop, which then inlines and vectorises; a closure operation would stay an
/// indirect call per element. Fields hold an operation's arguments (LeakyReLU's alpha, a scalar).
/// Every element-wise kernel uses them.
public protocol UnaryFloatOp { func callAsFunction(_ x: Float) -> Float }
public protocol BinaryFloatOp { func callAsFunction(_ a: Float, _ b: Float) -> Float }
public protocol TernaryFloatOp { func callAsFunction(_ a: Float, _ b: Float, _ c: Float) -> Float }

public extension Elementwise {
    /// `y[i] = op(x[i])`. `x` and `y` may be the same buffer.
    @inlinable @inline(__always)
    static func map<Op: UnaryFloatOp>(_ n: Int, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ op: Op) {
        Threads.chunks(n, Map(x: x, y: y, op: op))
    }

    /// `out[i] (+)= op(a[i], b[i])`.
    @inlinable @inline(__always)
    static func zip<Op: BinaryFloatOp>(_ n: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                                       _ out: UnsafeMutablePointer<Float>, accumulate: Bool, _ op: Op) {
        Threads.chunks(n, Zip(a: a, b: b, out: out, accumulate: accumulate, op: op))
    }

    /// `out[i] (+)= op(a[i], b[i], c[i])`.
    @inlinable @inline(__always)
    static func zip3<Op: TernaryFloatOp>(_ n: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                                         _ c: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                                         accumulate: Bool, _ op: Op) {
        Threads.chunks(n, Zip3(a: a, b: b, c: c, out: out, accumulate: accumulate, op: op))
    }

    @usableFromInline internal struct Copy: ParallelChunk {
        @usableFromInline let x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>

        @inlinable init(x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>) {
            self.x = x; self.out = out
        }

        @inlinable @inline(__always) package func callAsFunction(_ s: Int, _ e: Int) { (out + s).update(from: x + s, count: e - s) }
    }

    @usableFromInline internal struct Accumulate: ParallelChunk {
        @usableFromInline let x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>

        @inlinable init(x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>) {
            self.x = x; self.out = out
        }

        @inlinable @inline(__always) package func callAsFunction(_ s: Int, _ e: Int) { for i in s..<e { out[i] += x[i] } }
    }

    @usableFromInline internal struct Map<Op: UnaryFloatOp>: ParallelChunk {
        @usableFromInline let x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, op: Op

        @inlinable init(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, op: Op) {
            self.x = x; self.y = y; self.op = op
        }

        @inlinable @inline(__always) package func callAsFunction(_ s: Int, _ e: Int) { for i in s..<e { y[i] = op(x[i]) } }
    }

    @usableFromInline internal struct Zip<Op: BinaryFloatOp>: ParallelChunk {
        @usableFromInline let a: UnsafePointer<Float>, b: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, accumulate: Bool, op: Op

        @inlinable init(a: UnsafePointer<Float>, b: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, accumulate: Bool, op: Op) {
            self.a = a; self.b = b; self.out = out; self.accumulate = accumulate; self.op = op
        }

        @inlinable @inline(__always) package func callAsFunction(_ s: Int, _ e: Int) {
            if accumulate {
                for i in s..<e { out[i] += op(a[i], b[i]) }
            } else {
                for i in s..<e { out[i] = op(a[i], b[i]) }
            }
        }
    }

    @usableFromInline internal struct Zip3<Op: TernaryFloatOp>: ParallelChunk {
        @usableFromInline let a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>
        @usableFromInline let accumulate: Bool, op: Op

        @inlinable init(a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, accumulate: Bool, op: Op) {
            self.a = a; self.b = b; self.c = c; self.out = out; self.accumulate = accumulate; self.op = op
        }

        @inlinable @inline(__always) package func callAsFunction(_ s: Int, _ e: Int) {
            if accumulate {
                for i in s..<e { out[i] += op(a[i], b[i], c[i]) }
            } else {
                for i in s..<e { out[i] = op(a[i], b[i], c[i]) }
            }
        }
    }
}

/// `x * factor`.
struct Scaled: UnaryFloatOp {
    let factor: Float
    @inline(__always) func callAsFunction(_ x: Float) -> Float { x * factor }
}
