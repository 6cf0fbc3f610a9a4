import Testing
@testable import Kiln

/// Expected values come from NumPy 2.4 itself:
/// `np.random.RandomState(313).random_sample(3)`, `.uniform(-0.5, 0.5, 4).astype(np.float32)`,
/// `np.random.RandomState(7).normal(1.0, 2.0, 3)`.
struct NumpyRandomTests {
    @Test func randomSampleMatchesNumpy() {
        let r = NumpyRandom(seed: 313)
        let got = (0..<3).map { _ in r.randomSample() }
        #expect(got == [0.1655396242835081, 0.5501043660221061, 0.8608718021110578])
    }

    @Test func uniformMatchesNumpyAsFloat32() {
        let r = NumpyRandom(seed: 313)
        #expect(r.uniform(-0.5, 0.5, count: 4) == [-0.33446037769317627, 0.05010436475276947, 0.3608717918395996, 0.1179337203502655])
    }

    @Test func normalMatchesNumpy() {
        let r = NumpyRandom(seed: 7)
        let got = (0..<3).map { _ in 1.0 + 2.0 * r.gauss() }
        let expected = [4.381051407600712, 0.06812525891833443, 1.0656403273571688]
        for (a, b) in zip(got, expected) { #expect(abs(a - b) < 1e-12) }
    }

    @Test func glorotLimitFollowsNnablaFormula() {
        // parametric_init_conventions.json: inmaps=6, outmaps=5 gives +-0.7385489458759964.
        let (lo, hi) = Initializer.uniformLimGlorot(inmaps: 6, outmaps: 5)
        #expect(abs(hi - 0.7385489458759964) < 1e-15 && lo == -hi)
    }
}
