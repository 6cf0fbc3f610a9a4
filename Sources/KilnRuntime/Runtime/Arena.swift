import KilnCompiler

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
