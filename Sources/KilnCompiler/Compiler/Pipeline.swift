import KilnCore
import KilnKernels
import KilnGraph

/// The compiler, pass by pass. Every pass is a function from the value the previous one made to the next;
/// each lives in its own file, whose header states its contract (what it needs, what it guarantees, what it
/// may not touch). Options are resolved before the pipeline runs (`CompileOptions`, `Context`) and every
/// pass reads the same value.
///
///     roots ─ GraphCollector ─> nodes ─ Schedule ─> order ─ Fusion ─> steps ─ Quantization ─> steps, codes
///           ─ Layout ─> steps, layouts ─ Lowering ─> forward plan
///           ─ Autodiff (Rematerialization decides what backward rebuilds) ─> candidate plans
///           ─ memory passes, per candidate: Liveness ─> InPlace ─> HalfStorage ─> Placement ─> Plan
///           ─ Rematerialization.choose ─> the plan kept ─ GradientBuckets (distributed training) ─> Plan
///
/// Adding a pass is one line: a front pass in `lower`, a pass over a lowered plan in `memoryPasses`.
enum Pipeline {
    /// A pass over a lowered plan: steps and buffers are fixed, memory decisions are being made.
    typealias MemoryPass = @Sendable (inout Lowered) -> Void

    /// The passes every candidate plan goes through, in order.
    static let memoryPasses: [MemoryPass] = [
        Liveness.pass,          // lifetimes of every transient buffer, from the steps and options
        InPlace.pass,           // which buffers take over a dying buffer's memory
        HalfStorage.pass,       // precision half: float16 storage, staging and rounding (lifetimes re-derived)
        Placement.pass,         // offsets in one arena, the plan's memory figures
    ]

    static func lower(_ roots: [Variable], _ mode: PlanMode, _ options: CompileOptions) throws -> Lowered {
        let nodes = try GraphCollector.checkedNodes(from: roots)
        let order = Schedule.order(nodes)
        let fused = Fusion.steps(order, mode: mode, options: options, roots: roots)
        let quantized = Quantization.apply(fused, order: order, mode: mode, options: options, roots: roots)
        let laidOut = Layout.apply(quantized.steps, mode: mode, options: options, roots: roots)
        let forward = try Lowering.forward(laidOut.steps, codes: quantized.codes, layouts: laidOut.layouts,
                                           notes: quantized.notes, mode: mode, options: options, roots: roots)
        let candidates = mode == .training ? try Autodiff.candidates(forward, order) : [forward]
        let lowered = candidates.map { candidate in
            var l = candidate.finished()
            for pass in memoryPasses { pass(&l) }
            return l
        }
        var chosen = try Rematerialization.choose(lowered)
        GradientBuckets.pass(&chosen.plan)
        return chosen
    }
}

/// A plan being lowered, with how its steps map onto functions' slots.
package struct Lowered {
    package var plan: Plan
    package var bindings: PlanBindings
}
