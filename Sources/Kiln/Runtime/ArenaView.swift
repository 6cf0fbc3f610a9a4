/// One aligned allocation holding every transient buffer of a plan.
final class Arena {
    let base: UnsafeMutableRawPointer

    init(bytes: Int) {
        let n = max(bytes, Plan.alignment)
        // Not zeroed: every transient buffer is written before it is read (first gradient contributions
        // overwrite, gradients nobody produces get a zero step), and zeroing would touch every page up front.
        base = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: Plan.alignment)
    }

    deinit { base.deallocate() }
}

/// Where a plan run left a value inside an arena. Holds the arena, so reading a variable's `d` after a run
/// stays safe however long the variable lives.
final class ArenaView {
    let owner: AnyObject
    let pointer: UnsafeMutableRawPointer
    /// How the value is stored there (float16 in half-precision plans).
    let dtype: DType
    /// Cleared when the owner runs again and the slot may hold something else.
    var isValid = true

    init(owner: AnyObject, pointer: UnsafeMutableRawPointer, dtype: DType) {
        self.owner = owner
        self.pointer = pointer
        self.dtype = dtype
    }

    func floats(count: Int) -> [Float] {
        switch dtype {
        case .float32: return Array(UnsafeBufferPointer(start: pointer.assumingMemoryBound(to: Float.self), count: count))
        case .int32:
            let p = pointer.assumingMemoryBound(to: Int32.self)
            return (0..<count).map { Float(p[$0]) }
        case .float16:
            let p = pointer.assumingMemoryBound(to: Float16.self)
            return (0..<count).map { Float(p[$0]) }
        }
    }
}
