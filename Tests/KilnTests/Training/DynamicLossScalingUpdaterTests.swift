import Testing
@testable import Kiln
@testable import KilnTraining

/// nnabla 1.39's DynamicLossScalingUpdater trace (Fixtures/golden/dynamic_loss_scaling.json) and cases
/// derived by hand from the algorithm.
struct DynamicLossScalingUpdaterTests {
    /// loss = sum(w * x) with w = [1, 2, 3]; an event sets x to [0.5, -1, 2] ("finite"), with x[1] = +inf
    /// ("inf") or x[2] = NaN ("nan"). Every forward/backward attempt consumes one event.
    final class Toy {
        let x: Variable, w: Variable, loss: Variable
        var events: [String]
        var consumed = 0
        init(events: [String]) throws {
            x = try Variable(shape: [3])
            w = try Variable(shape: [3], needGrad: true, name: "w")
            try w.setData([1, 2, 3] as [Float])
            loss = try F.sum(F.mul2(w, x))
            self.events = events
        }
        func feed() throws {
            var x: [Float] = [0.5, -1, 2]
            switch events[consumed % events.count] {
            case "inf": x[1] = .infinity
            case "nan": x[2] = .nan
            default: break
            }
            consumed += 1
            try self.x.setData(x)
        }
    }

    @Test(arguments: [Precision.float, .half])
    func followsNnablasTrace(_ precision: Precision) throws {
        let golden = try Golden.json("dynamic_loss_scaling")
        let c = try #require(golden["cases"]?.array?.first)
        let config = try #require(c["config"])
        let toy = try Toy(events: (c["events_script"]?.array ?? []).compactMap { $0.string })
        let solver = Sgd(lr: 0.1)
        solver.setParameters([("w", toy.w)])
        let u = DynamicLossScalingUpdater(
            solver: solver, loss: toy.loss, dataFeeder: toy.feed,
            scale: Float(try #require(config["scale"]?.double)),
            scalingFactor: Float(try #require(config["scaling_factor"]?.double)),
            n: try #require(config["N"]?.int), precision: precision)
        let trace = try #require(c["trace"]?.array)
        #expect(trace.count == 17)
        for t in trace {
            let before = toy.consumed
            #expect(u.scale == Float(try #require(t["scale_before"]?.double)))
            let outcome = try u.update()
            #expect(outcome.attempts == t["attempts"]?.int)
            #expect(toy.consumed - before == t["events_consumed"]?.array?.count)
            #expect(outcome.updated == t["solver_updated"]?.bool)
            #expect(u.scale == Float(try #require(t["scale_after"]?.double)))
            #expect(u.counter == t["counter_after"]?.int)
            let w = (t["w_after"]?.array ?? []).compactMap { $0.double }.map { Float($0) }
            #expect(zip(toy.w.d, w).allSatisfy { abs($0 - $1) <= 1e-6 * max(1, abs($1)) }, "call \(t["call"]?.int ?? 0)")
        }
    }

    /// After 100 retries in a row the update is skipped: 101 attempts, the scale divided 101 times, w unchanged.
    @Test func givesUpAfterAHundredRetries() throws {
        let toy = try Toy(events: ["inf"])
        let solver = Sgd(lr: 0.1)
        solver.setParameters([("w", toy.w)])
        let u = DynamicLossScalingUpdater(solver: solver, loss: toy.loss, dataFeeder: toy.feed, scale: 8)
        let outcome = try u.update()
        #expect(outcome == .init(attempts: 101, updated: false))
        #expect(u.scale == 8 / Float(sign: .plus, exponent: 101, significand: 1))
        #expect(toy.w.d == [1, 2, 3])
        #expect(u.retries == 0)
    }

    /// accum_grad 2: two batches per attempt, gradients summed, then unscaled, then weight decay:
    /// w <- w - lr * (x1 + x2 + wd * w), derived by hand.
    @Test func accumulatesAndDecaysTheUnscaledGradient() throws {
        let toy = try Toy(events: ["finite"])
        let solver = Sgd(lr: 0.1)
        solver.setParameters([("w", toy.w)])
        let u = DynamicLossScalingUpdater(solver: solver, loss: toy.loss, dataFeeder: toy.feed, scale: 1024,
                                          accumGrad: 2, weightDecay: 0.5)
        try u.update()
        #expect(toy.consumed == 2)
        let x: [Float] = [0.5, -1, 2], w0: [Float] = [1, 2, 3]
        let expected = (0..<3).map { w0[$0] - 0.1 * (2 * x[$0] + 0.5 * w0[$0]) }
        #expect(zip(toy.w.d, expected).allSatisfy { abs($0 - $1) <= 1e-6 })
    }

    /// A real float16 overflow: LeNet's gradients at a loss scale of 2^24 exceed float16's range, so the
    /// updater backs off until they fit, then updates with finite values.
    @Test func backsOffWhenHalfGradientsOverflow() throws {
        try Parameters.isolated {
            let model = try Zoo.lenet.build(batchSize: 8, training: true)
            var rng = SplitMix64(seed: 9)
            try model.input.setData((0..<model.input.size).map { _ in Float.random(in: 0...255, using: &rng) })
            try model.label.setData((0..<8).map { Float($0) })
            let solver = Adam(alpha: 1e-3)
            solver.setParameters(model.network.getParameters(gradOnly: true))
            let u = DynamicLossScalingUpdater(solver: solver, loss: model.loss, scale: 16_777_216)
            let before = model.network.getParameters(gradOnly: true).map { $0.variable.d }
            let outcome = try u.update()
            #expect(outcome.updated && outcome.attempts > 1)
            #expect(u.scale < 16_777_216 && u.scale >= 1)
            let after = model.network.getParameters(gradOnly: true).map { $0.variable.d }
            #expect(after.allSatisfy { $0.allSatisfy(\.isFinite) })
            #expect(after != before)
        }
    }

    /// A plain Updater compiles at the precision it is given; one Sgd step on the toy model matches the
    /// hand-derived w - lr * x (every value here is exact in float16).
    @Test func plainUpdaterTakesAPrecision() throws {
        let toy = try Toy(events: ["finite"])
        let solver = Sgd(lr: 0.5)
        solver.setParameters([("w", toy.w)])
        let u = Updater(solver: solver, loss: toy.loss, dataFeeder: toy.feed, precision: .half)
        let plan = try u.plan().plan
        #expect(plan.options.precision == .half && plan.steps.contains { !$0.rounded.isEmpty })
        try u.update(0)
        let expected: [Float] = [0.75, 2.5, 2]   // w - 0.5 * [0.5, -1, 2]
        #expect(toy.w.d == expected)
    }
}
