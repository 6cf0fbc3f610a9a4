import KilnCore

/// Pass: groups the parameter gradients of a training plan into buckets for overlapped all-reduce.
///
/// Needs: a finished plan (steps fixed, arena placed) and `CompileOptions.gradientBucketBytes`.
/// Guarantees: every parameter gradient some step writes is in exactly one bucket; buckets are ordered by the
/// step after which their last gradient is final, and each holds the gradients finished in consecutive
/// order, packed (each at a multiple of `Plan.alignment`) up to the bucket size, a larger gradient alone.
/// The buckets sit back to back in one region outside the arena (the executable's gradient region), so a
/// bucket is one contiguous run of float32 values for one collective call.
/// May not touch: steps, buffers, the arena or its figures (buckets move gradients out of their own arrays
/// into one region of the same total size, padding aside).
enum GradientBuckets {
    static func pass(_ plan: inout Plan) {
        guard plan.mode == .training, let limit = plan.options.gradientBucketBytes else { return }
        // The last step writing each parameter gradient: from there on backward leaves it alone.
        var lastWrite: [Int: Int] = [:]
        for (i, s) in plan.steps.enumerated() {
            for b in s.outputs where plan.buffers[b].kind == .parameterGradient { lastWrite[b] = i }
        }
        let order = lastWrite.keys.sorted { (lastWrite[$0]!, $0) < (lastWrite[$1]!, $1) }
        var buckets: [GradientBucket] = []
        var region = 0
        for b in order {
            let bytes = plan.buffers[b].bytes
            if var last = buckets.last, last.bytes + bytes <= max(limit, 1) {
                last.buffers.append(b)
                last.offsets.append(last.bytes)
                last.bytes += bytes
                last.readyAfterStep = lastWrite[b]!
                buckets[buckets.count - 1] = last
            } else {
                if let last = buckets.last { region += last.bytes }
                buckets.append(GradientBucket(buffers: [b], offsets: [0], bytes: bytes, offset: region,
                                              readyAfterStep: lastWrite[b]!))
            }
        }
        plan.gradientBuckets = buckets
    }
}
