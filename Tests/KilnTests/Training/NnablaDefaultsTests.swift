import Foundation
import Testing
@testable import Kiln

/// Arguments nnabla's trainers and evaluator default to None: they can be left out at the call, and a
/// missing one the object cannot work without is an error naming it (nnabla fails later, at first use).
struct NnablaDefaultsTests {
    @Test func missingGraphsAndIteratorsAreNamed() throws {
        try Parameters.isolated {
            let m = try TinyRegression.model()
            let data = try TinyRegression.iterator()
            func message(_ body: () throws -> Void) -> String {
                do { try body() } catch { return "\(error)" }
                return ""
            }
            #expect(message { _ = try NaiveRegressionTrainer(solver: Sgd()) }.contains("NaiveRegressionTrainer needs tinput"))
            #expect(message { _ = try NaiveClassificationTrainer(solver: Sgd(), tinput: m.x) }.contains("needs tlabel"))
            #expect(message {
                _ = try NaiveRegressionTrainer(solver: Sgd(), tinput: m.x, tlabel: m.t, tpred: m.x, tdata: data,
                                               vinput: m.x, vlabel: m.t, vpred: m.x)
            }.contains("needs vdata"))
            #expect(message { _ = try Evaluator(m.loss) }.contains("Evaluator needs valIter"))
            // Given everything, they are made (the defaults were only left out of the signature).
            let x = try Variable(shape: [4, 2]), t = try Variable(shape: [4, 1])
            let y = try PF.affine(x, outMaps: 1, name: "defaults")
            let solver = Sgd(lr: 0.01)
            solver.setParameters(Parameters.current())
            let trainer = try NaiveRegressionTrainer(solver: solver, tinput: x, tlabel: t, tpred: y, tdata: data,
                                                     vinput: x, vlabel: t, vpred: y, vdata: try TinyRegression.iterator())
            #expect(trainer.trainer.iterPerEpoch == 10 / 4)
            let e = try Evaluator(m.loss, valIter: 2)
            #expect(e.valIter == 2)
        }
    }
}
