import Foundation
import Testing
@testable import Kiln

/// y = x w + b on batches of 2 samples with 3 features, loss = mean((y - t)^2), plain Sgd: every expected
/// value below is derived by hand (in Double) from dL/dw_i = (2/N) sum_n (y_n - t_n) x_ni, dL/db = (2/N) sum_n (y_n - t_n).
struct UpdaterTests {
    static let xs: [[Float]] = [[1, 2, -1, 0.5, -1, 2], [0, 1, 1, 2, 0, -1], [-1, 0.5, 0, 1, 1, 1], [2, -1, 0.5, 0, 1, -2]]
    static let ts: [[Float]] = [[1, -1], [0.5, 2], [-1, 0], [0.25, 1]]
    static let w0: [Float] = [0.1, -0.2, 0.3], b0: [Float] = [0.05]
    static let lr: Float = 0.1

    /// Hand-derived gradients of one batch at (w, b).
    static func grads(_ k: Int, _ w: [Double], _ b: Double) -> (w: [Double], b: Double) {
        var gw = [0.0, 0.0, 0.0], gb = 0.0
        for n in 0..<2 {
            let x = (0..<3).map { Double(xs[k][n * 3 + $0]) }
            let r = x[0] * w[0] + x[1] * w[1] + x[2] * w[2] + b - Double(ts[k][n])
            for i in 0..<3 { gw[i] += 2.0 / 2.0 * r * x[i] }
            gb += 2.0 / 2.0 * r
        }
        return (gw, gb)
    }

    struct Model {
        let x: Variable, t: Variable, w: Variable, b: Variable, loss: Variable
        init() throws {
            x = try Variable(shape: [2, 3])
            t = try Variable(shape: [2, 1])
            w = try Variable(shape: [3, 1], needGrad: true, name: "w")
            b = try Variable(shape: [1], needGrad: true, name: "b")
            try w.setData(UpdaterTests.w0)
            try b.setData(UpdaterTests.b0)
            loss = try F.mean(F.squaredError(F.affine(x, w, b), t))
        }
        /// A data feeder cycling through the batches.
        func feeder(_ log: EventLog) -> () throws -> Void {
            var k = 0
            return {
                log.add("feed\(k % UpdaterTests.xs.count)")
                try self.x.setData(UpdaterTests.xs[k % UpdaterTests.xs.count])
                try self.t.setData(UpdaterTests.ts[k % UpdaterTests.ts.count])
                k += 1
            }
        }
    }

    static func close(_ a: [Float], _ b: [Double], tol: Double = 1e-5) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { abs(Double($0) - $1) <= tol * max(1, abs($1)) }
    }

    @Test(arguments: [1, 3])
    func callbacksOrderAndAccumulatedUpdate(accum: Int) throws {
        try Parameters.isolated {
            let m = try Model()
            let solver = Sgd(lr: Self.lr)
            solver.setParameters([("w", m.w), ("b", m.b)])
            let log = EventLog()
            var gradsAtUpdate: [[Float]] = []
            func cb(_ tag: String) -> IterationCallback { { i in log.add("\(tag)\(i)") } }
            let comm = FakeCommunicator(log: log)
            let u = Updater(solver: solver, loss: m.loss, dataFeeder: m.feeder(log),
                            forwardCallbackOnStart: [cb("fs")], forwardCallbackOnFinish: [cb("ff")],
                            backwardCallbackOnStart: [cb("bs")], backwardCallbackOnFinish: [cb("bf")],
                            commCallbackOnStart: [cb("cs")], commCallbackOnFinish: [cb("cf")],
                            updateCallbackOnStart: [cb("us"), { _ in gradsAtUpdate.append(m.w.g + m.b.g) }],
                            updateCallbackOnFinish: [cb("uf")], accumGrad: accum, comm: comm)
            try u.update(7)
            try u.update(8)

            var expected: [String] = []
            var k = 0
            for i in [7, 8] {
                for _ in 0..<accum {
                    expected += ["feed\(k % Self.xs.count)", "fs\(i)", "ff\(i)", "bs\(i)", "bf\(i)"]
                    k += 1
                }
                expected += ["cs\(i)", "allReduce", "cf\(i)", "us\(i)", "uf\(i)"]
            }
            #expect(log.events == expected)

            // Hand-derived: each update zeroes the gradients, sums the accum batches' gradients at the
            // current weights, then w -= lr * sum.
            var w = Self.w0.map(Double.init), b = Double(Self.b0[0])
            k = 0
            for update in 0..<2 {
                var sw = [0.0, 0.0, 0.0], sb = 0.0
                for _ in 0..<accum {
                    let g = Self.grads(k % Self.xs.count, w, b)
                    for i in 0..<3 { sw[i] += g.w[i] }
                    sb += g.b
                    k += 1
                }
                #expect(Self.close(gradsAtUpdate[update], sw + [sb]), "update \(update): \(gradsAtUpdate[update]) vs \(sw + [sb])")
                for i in 0..<3 { w[i] -= Double(Self.lr) * sw[i] }
                b -= Double(Self.lr) * sb
            }
            #expect(Self.close(m.w.d, w), "\(m.w.d) vs \(w)")
            #expect(Self.close(m.b.d, [b]), "\(m.b.d) vs \(b)")
            // One all-reduce per update, of the parameter gradients, without division.
            #expect(comm.calls.count == 2)
            #expect(comm.divisions == [false, false])
            for call in comm.calls {
                #expect(call.count == 2)
                #expect(call.count == 2 && call[0] === m.w.grad && call[1] === m.b.grad)
            }
        }
    }

    @Test func communicatorResultIsWhatTheSolverApplies() throws {
        try Parameters.isolated {
            let m = try Model()
            let solver = Sgd(lr: Self.lr)
            solver.setParameters([("w", m.w), ("b", m.b)])
            // Two identical workers: the all-reduced (summed) gradient is twice the local one.
            let comm = FakeCommunicator(workers: 2)
            let u = Updater(solver: solver, loss: m.loss, dataFeeder: m.feeder(EventLog()), comm: comm)
            try u.update(0)
            let g = Self.grads(0, Self.w0.map(Double.init), Double(Self.b0[0]))
            #expect(Self.close(m.w.d, (0..<3).map { Double(Self.w0[$0]) - Double(Self.lr) * 2 * g.w[$0] }))
            #expect(Self.close(m.b.d, [Double(Self.b0[0]) - Double(Self.lr) * 2 * g.b]))
        }
    }

    @Test func givenGradsAreTheOnesExchanged() throws {
        try Parameters.isolated {
            let m = try Model()
            let solver = Sgd(lr: Self.lr)
            solver.setParameters([("w", m.w), ("b", m.b)])
            let comm = FakeCommunicator(workers: 2)
            let u = Updater(solver: solver, loss: m.loss, dataFeeder: m.feeder(EventLog()), comm: comm,
                            grads: [m.b.grad])
            try u.update(0)
            #expect(comm.calls.count == 1)
            #expect(comm.calls.first?.count == 1 && comm.calls.first?[0] === m.b.grad)
            let g = Self.grads(0, Self.w0.map(Double.init), Double(Self.b0[0]))
            // Only b's gradient went through the (doubling) exchange.
            #expect(Self.close(m.w.d, (0..<3).map { Double(Self.w0[$0]) - Double(Self.lr) * g.w[$0] }))
            #expect(Self.close(m.b.d, [Double(Self.b0[0]) - Double(Self.lr) * 2 * g.b]))
        }
    }

    @Test func withoutCommunicatorNoCommCallbacks() throws {
        try Parameters.isolated {
            let m = try Model()
            let solver = Sgd(lr: Self.lr)
            solver.setParameters([("w", m.w), ("b", m.b)])
            let log = EventLog()
            let u = Updater(solver: solver, loss: m.loss, dataFeeder: m.feeder(log),
                            commCallbackOnStart: [{ i in log.add("cs\(i)") }],
                            commCallbackOnFinish: [{ i in log.add("cf\(i)") }],
                            updateCallbackOnFinish: [{ i in log.add("uf\(i)") }])
            try u.update(0)
            #expect(log.events == ["feed0", "uf0"])
        }
    }

    @Test func misconfigurationThrows() throws {
        try Parameters.isolated {
            let m = try Model()
            #expect(throws: KilnError.self) { try Updater(loss: m.loss).update(0) }
            #expect(throws: KilnError.self) { try Updater(solver: Sgd(), loss: nil).update(0) }
            #expect(throws: KilnError.self) { try Updater(solver: Sgd(), loss: m.loss, accumGrad: 0).update(0) }
            // An error thrown by the data feeder reaches the caller.
            let u = Updater(solver: Sgd(), loss: m.loss, dataFeeder: { throw KilnError.dataset("feeder failed") })
            #expect(throws: KilnError.dataset("feeder failed")) { try u.update(0) }
        }
    }
}
