import KilnCore
import KilnGraph
import KilnCompiler

/// nnabla's `forward` / `backward` on a variable, through cached plans.
extension Variable {
    /// Computes this variable (nnabla's `forward`). With `clearBuffer`, intermediate values are not kept;
    /// without it (the default, as in nnabla) every intermediate value can be read afterwards. If the graph
    /// needs gradients and buffers are kept, the forward phase of a training plan runs, so that `backward`
    /// can follow.
    public func forward(clearBuffer: Bool = false, clearNoNeedGrad: Bool = false) throws {
        try takePendingError()
        let context = Context.current
        let (mode, options) = CompileOptions.resolved(.forward(clearBuffer: clearBuffer, clearNoNeedGrad: clearNoNeedGrad),
                                                      precision: context.precision)
        guard mode == .training else {
            try executable(mode, options, context: context).run(.all)
            lastTraining = nil
            return
        }
        // Only a training plan's forward phase can be followed by backward; a graph without gradients runs
        // the inference plan of the same options.
        let training = try executable(.training, options, context: context)
        if training.plan.steps.count > training.plan.forwardStepCount {
            try training.run(.forward)
            lastTraining = training
        } else {
            try executable(.inference, options, context: context).run(.all)
            lastTraining = nil
        }
    }

    /// Back-propagates from this variable (nnabla's `backward`). `grad` seeds this variable's gradient
    /// (nil keeps the current `.g`). Call `forward` first.
    public func backward(grad: Float? = 1, clearBuffer: Bool = false) throws {
        try takePendingError()
        guard let plan = lastTraining else {
            throw KilnError.planFailed("backward on \(displayName) needs a forward first (forward(clearBuffer: false))")
        }
        try plan.run(.backward, seed: grad)
    }

    /// The cached executable for this root, recompiled when the graph behind it changed.
    func executable(_ mode: PlanMode, _ options: CompileOptions, context: Context = .current) throws -> Executable {
        let nodes = GraphCollector.nodes(from: [self])
        let fp = GraphCollector.fingerprint(nodes, roots: [self])
        let key = PlanCacheKey(mode, options, context)
        if let c = planCache[key], c.fingerprint == fp { return c.executable }
        let e = try Compiler.compile([self], mode, options: options, context: context)
        planCache[key] = CachedPlan(fingerprint: fp, executable: e)
        return e
    }
}
