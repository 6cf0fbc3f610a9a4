import KilnCore
import KilnKernels
import KilnGraph

/// The forward phase of a plan: a buffer for every value and a step for every scheduled node or fused chain.
///
/// Contract: needs the fused schedule (`Fusion.steps`, itself in `Schedule` order). Appends one forward step
/// per schedule step, in order, and creates buffers on first sight of each value: leaves become inputs or
/// parameters (outside the arena), roots and persistent values outputs (outside the arena), everything else
/// activations (in the arena), plus a workspace per step that needs one. Decides nothing about memory:
/// lifetimes, sharing and offsets are the memory passes' work.
enum Lowering {
    static func forward(_ steps: [Fusion.Step], codes: [GraphCollector.ValueKey: QuantizedCodes] = [:],
                        layouts: [GraphCollector.ValueKey: PaddedPlanes] = [:], notes: [String] = [], mode: PlanMode,
                        options: CompileOptions, roots: [Variable]) throws -> PlanBuilder {
        var b = PlanBuilder(mode: mode, options: options, roots: roots)
        b.codes = codes
        b.layouts = layouts
        b.notes = notes
        for step in steps {
            if let fused = step.fused { try b.addFused(step.nodes, fused, inputs: step.inputs) } else { try b.addForward(step.nodes[0]) }
        }
        b.forwardStepCount = b.steps.count
        return b
    }
}
