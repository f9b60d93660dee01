-- dropnet.nn layers, activations, losses, weight init and a training loop.
-- Reference values come from PyTorch (Debian's python3-torch) for fixed
-- weights and inputs; the script that printed them is in the comment below.
local dn = require "dropnet"
local nn = require "dropnet.nn"
local H = require "helpers"

local F = nn.functional
local RTOL, ATOL = 1e-5, 1e-6

-- luacheck: push ignore 631 (the generating script and its output, pasted as they are)
--[==[ Reference values: /usr/bin/python3 this script > ref.txt, pasted into REF below.
import torch, torch.nn.functional as F
torch.set_default_dtype(torch.float32)
def T(v): return torch.tensor(v, dtype=torch.float32)
def lua(t):
    if isinstance(t, torch.Tensor): t = t.detach().double().tolist()
    if isinstance(t, list): return "{" + ", ".join(lua(v) for v in t) + "}"
    return "%.9g" % t
out = []
def emit(name, v): out.append("%s = %s," % (name, lua(v)))
X  = T([[0.5, -1.2, 0.3, 2.0], [-0.7, 0.1, -0.4, 1.5], [1.1, -0.3, 0.8, -2.2]])
W1 = T([[0.2, -0.4, 0.1, 0.3], [-0.3, 0.25, 0.5, -0.1], [0.15, 0.05, -0.2, 0.4],
        [-0.45, -0.1, 0.35, 0.2], [0.3, 0.3, -0.25, -0.35]])
B1 = T([0.05, -0.1, 0.2, 0.0, -0.05])
W2 = T([[0.4, -0.2, 0.3, 0.1, -0.5], [-0.3, 0.45, -0.1, 0.25, 0.2], [0.1, 0.2, -0.4, -0.35, 0.3]])
B2 = T([0.1, -0.2, 0.05])
Y  = torch.tensor([1, 2, 0])            # Lua: {2, 3, 1}
G3 = T([[0.3, -0.5, 0.2, 0.7, -0.1], [0.6, 0.4, -0.3, -0.2, 0.5], [-0.4, 0.1, 0.9, 0.3, -0.6]])
A  = T([[-2.5, -1.0, -0.25, 0.1, 0.3], [0.75, 1.5, 3.0, -0.05, -4.0]])
GA = T([[0.5, -0.3, 0.8, 0.2, -0.6], [0.1, 0.9, -0.4, 0.7, 0.3]])
# Linear with each fused activation: outputs and grads of x, W, b for backward(G3)
for act in ["none", "relu", "tanh", "sigmoid"]:
    x, w, b = X.clone().requires_grad_(), W1.clone().requires_grad_(), B1.clone().requires_grad_()
    y = F.linear(x, w, b)
    y = {"none": y, "relu": torch.relu(y), "tanh": torch.tanh(y), "sigmoid": torch.sigmoid(y)}[act]
    y.backward(G3)
    emit("linear_%s" % act, y); emit("linear_%s_dx" % act, x.grad); emit("linear_%s_dw" % act, w.grad); emit("linear_%s_db" % act, b.grad)
x, w = X.clone().requires_grad_(), W1.clone().requires_grad_()
y = F.linear(x, w); y.backward(G3)
emit("linear_nobias", y); emit("linear_nobias_dx", x.grad); emit("linear_nobias_dw", w.grad)
# activations on A, grads for backward(GA)
acts = {
  "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "selu": F.selu,
  "leaky_relu": lambda a: F.leaky_relu(a, 0.01), "leaky_relu_02": lambda a: F.leaky_relu(a, 0.2),
  "elu": lambda a: F.elu(a, 1.0), "elu_05": lambda a: F.elu(a, 0.5),
  "gelu": lambda a: F.gelu(a), "gelu_tanh": lambda a: F.gelu(a, approximate="tanh"),
  "softmax_2": lambda a: F.softmax(a, 1), "softmax_1": lambda a: F.softmax(a, 0),
  "log_softmax_2": lambda a: F.log_softmax(a, 1), "log_softmax_1": lambda a: F.log_softmax(a, 0),
}
for name in sorted(acts):
    a = A.clone().requires_grad_(); y = acts[name](a); y.backward(GA)
    emit(name, y); emit(name + "_grad", a.grad)
# the MLP: Linear(4,5) ReLU Linear(5,3), cross entropy
w1, b1, w2, b2 = [t.clone().requires_grad_() for t in (W1, B1, W2, B2)]
logits = F.linear(torch.relu(F.linear(X, w1, b1)), w2, b2)
loss = F.cross_entropy(logits, Y); loss.backward()
emit("mlp_logits", logits); emit("mlp_loss", loss.item())
emit("mlp_dw1", w1.grad); emit("mlp_db1", b1.grad); emit("mlp_dw2", w2.grad); emit("mlp_db2", b2.grad)
# losses
L  = T([[1.5, -0.3, 0.8, 2.1], [-1.2, 0.4, 0.9, -0.5], [0.3, 2.2, -1.7, 0.6]])
LY = torch.tensor([1, 3, 0])          # Lua: {2, 4, 1}
GN = T([0.5, -1.0, 2.0])
for red in ["mean", "sum"]:
    for ls in [0.0, 0.1]:
        l = L.clone().requires_grad_(); v = F.cross_entropy(l, LY, reduction=red, label_smoothing=ls); v.backward()
        tag = "ce_%s%s" % (red, "_ls" if ls else "")
        emit(tag, v.item()); emit(tag + "_grad", l.grad)
l = L.clone().requires_grad_(); v = F.cross_entropy(l, LY, reduction="none"); v.backward(GN)
emit("ce_none", v); emit("ce_none_grad", l.grad)
l = L.clone().requires_grad_(); v = F.cross_entropy(l, LY, reduction="none", label_smoothing=0.2); v.backward(GN)
emit("ce_none_ls02", v); emit("ce_none_ls02_grad", l.grad)
BIG = T([[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3]])
l = BIG.clone().requires_grad_(); v = F.cross_entropy(l, torch.tensor([0, 2])); v.backward()
emit("ce_big", v.item()); emit("ce_big_grad", l.grad)
for red in ["mean", "sum"]:
    l = L.clone().requires_grad_(); v = F.nll_loss(l, LY, reduction=red); v.backward()
    emit("nll_" + red, v.item()); emit("nll_%s_grad" % red, l.grad)
l = L.clone().requires_grad_(); v = F.nll_loss(l, LY, reduction="none"); v.backward(GN)
emit("nll_none", v); emit("nll_none_grad", l.grad)
MA = T([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]); MB = T([[0.2, -0.5, 1.0], [2.0, -0.25, 0.5]])
GM = T([[1.0, -2.0, 0.5], [0.3, 0.7, -1.1]])
for red in ["mean", "sum", "none"]:
    a, b = MA.clone().requires_grad_(), MB.clone().requires_grad_()
    v = F.mse_loss(a, b, reduction=red); v.backward(GM if red == "none" else None)
    emit("mse_" + red, v if red == "none" else v.item()); emit("mse_%s_da" % red, a.grad); emit("mse_%s_db" % red, b.grad)
BX = T([[0.5, -1.0, 30.0], [-30.0, 2.0, -0.25]]); BT = T([[1.0, 0.0, 0.3], [0.0, 1.0, 0.7]])
for red in ["mean", "sum", "none"]:
    x = BX.clone().requires_grad_()
    v = F.binary_cross_entropy_with_logits(x, BT, reduction=red); v.backward(GM if red == "none" else None)
    emit("bce_" + red, v if red == "none" else v.item()); emit("bce_%s_grad" % red, x.grad)
print("\n".join(out))
]==]
local REF = {
  linear_none = {{1.25999999, -0.600000024, 0.954999983, 0.400000006, -1.03499997}, {0.280000001, -0.215000004, 0.779999971, 0.465000004, -0.655000031}, {-0.189999998, 0.114999987, -0.690000057, -0.625, 0.75999999}},
  linear_none_dx = {{-0.104999974, -0.335000008, 0.0100000016, 0.394999981}, {0.194999993, 0.0149999857, 0.125, -0.195000008}, {-0.290000021, 0.0200000033, 0.0850000083, 0.5}},
  linear_none_dw = {{-0.710000038, -0.180000007, -0.470000029, 2.38000011}, {-0.419999957, 0.610000014, -0.230000004, -0.620000005}, {1.29999995, -0.540000021, 0.899999976, -2.02999997}, {0.819999993, -0.950000048, 0.530000031, 0.439999998}, {-1.06000006, 0.350000024, -0.710000038, 1.87000012}},
  linear_none_db = {0.5, 7.4505806e-09, 0.799999952, 0.800000012, -0.200000018},
  linear_relu = {{1.25999999, 0, 0.954999983, 0.400000006, 0}, {0.280000001, 0, 0.779999971, 0.465000004, 0}, {0, 0.114999987, 0, 0, 0.75999999}},
  linear_relu_dx = {{-0.224999979, -0.180000007, 0.234999985, 0.310000002}, {0.165000007, -0.235000029, 0.0500000045, 0.0200000014}, {-0.210000008, -0.155000016, 0.200000003, 0.200000003}},
  linear_relu_dw = {{-0.270000011, -0.300000012, -0.150000006, 1.5}, {0.110000007, -0.0300000012, 0.0800000057, -0.220000014}, {0.310000002, -0.270000011, 0.180000007, -0.0500000119}, {0.48999998, -0.860000014, 0.290000021, 1.10000002}, {-0.660000026, 0.180000007, -0.480000019, 1.32000005}},
  linear_relu_db = {0.900000036, 0.100000001, -0.100000009, 0.5, -0.600000024},
  linear_tanh = {{0.851064086, -0.537049592, 0.74203831, 0.379948974, -0.775905907}, {0.272905082, -0.211747333, 0.652706683, 0.434150577, -0.575026333}, {-0.187746197, 0.114495695, -0.597982049, -0.554599702, 0.641076982}},
  linear_tanh_dx = {{-0.144705892, -0.189370036, 0.0319818556, 0.230059698}, {0.144052237, -0.0185868088, 0.140528411, -0.0900851414}, {-0.219560727, 0.0811450332, 0.0561764017, 0.270870656}},
  linear_tanh_dw = {{-0.771856725, 0.0720531642, -0.506033838, 1.84736574}, {-0.336782128, 0.435546428, -0.180611506, -0.355595827}, {0.80146575, -0.298522949, 0.558380246, -1.35052323}, {0.6415838, -0.797284663, 0.410785854, 0.497443676}, {-0.64292258, 0.187247306, -0.428537816, 1.19992137}},
  linear_tanh_db = {0.252120137, 0.124965452, 0.495859325, 0.644370258, -0.0585368574},
  linear_sigmoid = {{0.779026151, 0.354343712, 0.722119629, 0.598687649, 0.262115896}, {0.569546223, 0.446456075, 0.685680151, 0.614199638, 0.341863692}, {0.452642411, 0.528718352, 0.334033042, 0.348645121, 0.681353748}},
  linear_sigmoid_dx = {{-0.0308182705, -0.0698693171, 0.00364091154, 0.08339113}, {0.0451402999, 0.00112936704, 0.03235659, -0.040470764}, {-0.0670017451, 0.00998831727, 0.0189178288, 0.107079946}},
  linear_sigmoid_dw = {{-0.186160132, -0.0175313242, -0.122628525, 0.541960061}, {-0.0989840403, 0.139680624, -0.0539249107, -0.135322973}, {0.285556525, -0.114687629, 0.198070109, -0.457181036}, {0.192205697, -0.226996437, 0.123913445, 0.115396947}, {-0.231711209, 0.0735389292, -0.155014113, 0.416648716}},
  linear_sigmoid_db = {0.0996384323, 0.00937862508, 0.175685197, 0.188918322, -0.0371111482},
  linear_nobias = {{1.21000004, -0.5, 0.754999995, 0.400000006, -0.985000014}, {0.230000004, -0.114999995, 0.579999983, 0.465000004, -0.605000019}, {-0.239999995, 0.214999989, -0.890000045, -0.625, 0.810000002}},
  linear_nobias_dx = {{-0.104999974, -0.335000008, 0.0100000016, 0.394999981}, {0.194999993, 0.0149999857, 0.125, -0.195000008}, {-0.290000021, 0.0200000033, 0.0850000083, 0.5}},
  linear_nobias_dw = {{-0.710000038, -0.180000007, -0.470000029, 2.38000011}, {-0.419999957, 0.610000014, -0.230000004, -0.620000005}, {1.29999995, -0.540000021, 0.899999976, -2.02999997}, {0.819999993, -0.950000048, 0.530000031, 0.439999998}, {-1.06000006, 0.350000024, -0.710000038, 1.87000012}},
  elu = {{-0.917914987, -0.63212055, -0.221199214, 0.100000001, 0.300000012}, {0.75, 1.5, 3, -0.0487705469, -0.981684387}},
  elu_grad = {{0.0410424992, -0.110363841, 0.623040617, 0.200000003, -0.600000024}, {0.100000001, 0.899999976, -0.400000006, 0.665860593, 0.0054946919}},
  elu_05 = {{-0.458957493, -0.316060275, -0.110599607, 0.100000001, 0.300000012}, {0.75, 1.5, 3, -0.0243852735, -0.490842193}},
  elu_05_grad = {{0.0205212496, -0.0551819205, 0.311520308, 0.200000003, -0.600000024}, {0.100000001, 0.899999976, -0.400000006, 0.332930297, 0.00274734595}},
  gelu = {{-0.0155241787, -0.158655286, -0.100323431, 0.0539827906, 0.185373425}, {0.580029547, 1.39978909, 2.99595022, -0.0240030531, -0.000126719475}},
  gelu_grad = {{-0.0188055336, 0.0249946304, 0.243701369, 0.115904629, -0.439396679}, {0.0999225825, 1.01472223, -0.404778242, 0.322097182, -0.00015108884}},
  gelu_tanh = {{-0.0150842965, -0.158807993, -0.100324646, 0.0539827533, 0.185370937}, {0.579960585, 1.39957154, 2.99636269, -0.0240030624, -7.02142715e-05}},
  gelu_tanh_grad = {{-0.018975826, 0.0248892289, 0.243716717, 0.115904354, -0.439377338}, {0.0998938307, 1.01493967, -0.404633731, 0.322097391, -0.000100491627}},
  leaky_relu = {{-0.0249999985, -0.00999999978, -0.00249999994, 0.100000001, 0.300000012}, {0.75, 1.5, 3, -0.000500000024, -0.0399999991}},
  leaky_relu_grad = {{0.00499999989, -0.00300000003, 0.00800000038, 0.200000003, -0.600000024}, {0.100000001, 0.899999976, -0.400000006, 0.00699999975, 0.00300000003}},
  leaky_relu_02 = {{-0.5, -0.200000003, -0.0500000007, 0.100000001, 0.300000012}, {0.75, 1.5, 3, -0.0100000007, -0.800000012}},
  leaky_relu_02_grad = {{0.100000001, -0.0600000024, 0.160000011, 0.200000003, -0.600000024}, {0.100000001, 0.899999976, -0.400000006, 0.140000001, 0.0600000024}},
  log_softmax_1 = {{-3.28804135, -2.57888985, -3.28804135, -0.620957077, -0.0134772928}, {-0.0380414128, -0.0788897499, -0.0380414128, -0.770957112, -4.31347752}},
  log_softmax_1_grad = {{0.477603853, -0.345514923, 0.785069227, -0.283686817, -0.304016083}, {-0.477603853, 0.345514923, -0.785069227, 0.283686876, 0.304016083}},
  log_softmax_2 = {{-3.8039434, -2.3039434, -1.5539434, -1.20394349, -1.00394344}, {-2.56976199, -1.81976199, -0.319762021, -3.36976194, -7.31976223}},
  log_softmax_2_grad = {{0.48663035, -0.359918565, 0.673152447, 0.0199947134, -0.819858968}, {-0.0224860106, 0.640697062, -1.56211495, 0.644963443, 0.298940301}},
  relu = {{0, 0, 0, 0.100000001, 0.300000012}, {0.75, 1.5, 3, 0, 0}},
  relu_grad = {{0, 0, 0, 0.200000003, -0.600000024}, {0.100000001, 0.899999976, -0.400000006, 0, 0}},
  selu = {{-1.61378574, -1.11133075, -0.388890177, 0.105070107, 0.315210313}, {0.788025737, 1.57605147, 3.15210295, -0.0857434645, -1.72589862}},
  selu_grad = {{0.0721567869, -0.194030598, 1.09536731, 0.210140213, -0.630420625}, {0.105070107, 0.945630908, -0.420280427, 1.17064905, 0.00966021419}},
  sigmoid = {{0.0758581758, 0.268941432, 0.437823504, 0.524979174, 0.574442506}, {0.679178715, 0.817574441, 0.952574134, 0.487502635, 0.0179862101}},
  sigmoid_grad = {{0.0350518562, -0.0589835867, 0.196907267, 0.0498752072, -0.146674991}, {0.0217894986, 0.134231836, -0.0180706605, 0.174890667, 0.00529881194}},
  softmax_1 = {{0.0373268835, 0.0758581758, 0.0373268835, 0.53742981, 0.986613095}, {0.962673068, 0.924141824, 0.962673068, 0.462570161, 0.0133869164}},
  softmax_1_grad = {{0.0143734347, -0.0841244534, 0.043120306, -0.124299496, -0.0118869562}, {-0.0143734282, 0.0841244683, -0.0431203358, 0.124299496, 0.0118869366}},
  softmax_2 = {{0.0222827271, 0.0998642594, 0.211412624, 0.300008774, 0.366431564}, {0.076553762, 0.162064314, 0.726321876, 0.0343978256, 0.000662319828}},
  softmax_2_grad = {{0.0113540515, -0.0290060751, 0.171148047, 0.0628653392, -0.216361374}, {0.0162859168, 0.164128721, -0.20864445, 0.0279564299, 0.000273364771}},
  tanh = {{-0.986614287, -0.761594176, -0.244918659, 0.0996679962, 0.291312635}, {0.635148942, 0.905148268, 0.995054781, -0.0499583744, -0.999329329}},
  tanh_grad = {{0.0132961245, -0.125992298, 0.752011895, 0.198013261, -0.54908216}, {0.0596585833, 0.162635952, -0.0039463928, 0.698252916, 0.000402267935}},
  mlp_logits = {{0.930500031, -0.573500037, -0.345999956}, {0.492500007, -0.24575001, -0.396749973}, {-0.303000003, 0.00374999642, 0.301000029}},
  mlp_loss = 1.62262499,
  mlp_dw1 = {{0.0766608268, -0.214327216, 0.0463805646, 0.389217526}, {0.141392246, -0.038561523, 0.102830723, -0.282784492}, {-0.0690667555, -0.069392316, -0.0384634398, 0.363705039}, {-0.126249626, 0.097573027, -0.0731494501, 0.0540724695}, {0.211401954, -0.0576550774, 0.153746873, -0.422803909}},
  mlp_db1 = {0.199409589, 0.1285384, 0.219060197, 0.0595403612, 0.192183584},
  mlp_dw2 = {{0.329177707, -0.0291811191, 0.349690586, 0.170872554, -0.192849159}, {-0.334208816, 0.0124378642, -0.205421001, -0.0743757188, 0.0821980685}, {0.00503111677, 0.0167432539, -0.144269571, -0.0964968354, 0.110651076}},
  mlp_db2 = {0.144756377, -0.0914896578, -0.0532667339},
  ce_mean = 2.44836712,
  ce_mean_grad = {{0.0956754014, -0.317518294, 0.0475109927, 0.174331903}, {0.0206616446, 0.102337778, 0.168726474, -0.291725904}, {-0.296987236, 0.243006229, 0.00491891103, 0.0490621142}},
  ce_mean_ls = 2.38920045,
  ce_mean_ls_grad = {{0.0873420537, -0.292518258, 0.0391776524, 0.165998548}, {0.0123283081, 0.0940044373, 0.160393119, -0.266725868}, {-0.27198723, 0.234672859, -0.00341442367, 0.0407287702}},
  ce_sum = 7.34510136,
  ce_sum_grad = {{0.287026197, -0.952554882, 0.142532974, 0.52299571}, {0.0619849302, 0.307013333, 0.506179392, -0.875177681}, {-0.890961707, 0.729018688, 0.0147567326, 0.147186339}},
  ce_sum_ls = 7.16760111,
  ce_sum_ls_grad = {{0.262026161, -0.877554834, 0.117532954, 0.497995645}, {0.036984928, 0.282013327, 0.481179357, -0.800177634}, {-0.815961659, 0.704018593, -0.0102432696, 0.122186318}},
  ce_none = {3.04818177, 2.08086395, 2.21605611},
  ce_none_grad = {{0.143513098, -0.476277441, 0.0712664872, 0.261497855}, {-0.0619849302, -0.307013333, -0.506179392, 0.875177681}, {-1.78192341, 1.45803738, 0.0295134652, 0.294372678}},
  ce_none_ls02 = {2.78318191, 2.00086403, 2.20605612},
  ce_none_ls02_grad = {{0.1185131, -0.401277453, 0.0462664887, 0.236497849}, {-0.0119849294, -0.257013321, -0.45617938, 0.725177705}, {-1.48192346, 1.35803735, -0.0704865381, 0.194372684}},
  ce_big = 2500,
  ce_big_grad = {{0, 0, 0}, {0, 0.5, -0.5}},
  nll_mean = 0.166666672,
  nll_mean_grad = {{0, -0.333333343, 0, 0}, {0, 0, 0, -0.333333343}, {-0.333333343, 0, 0, 0}},
  nll_sum = 0.5,
  nll_sum_grad = {{0, -1, 0, 0}, {0, 0, 0, -1}, {-1, 0, 0, 0}},
  nll_none = {0.300000012, 0.5, -0.300000012},
  nll_none_grad = {{0, -0.5, 0, 0}, {0, 0, 0, 1}, {-2, 0, 0, 0}},
  mse_mean = 0.567083359,
  mse_mean_da = {{0.100000009, -0.166666672, 0.333333343}, {-0.166666672, 0.166666672, -0.416666687}},
  mse_mean_db = {{-0.100000009, 0.166666672, -0.333333343}, {0.166666672, -0.166666672, 0.416666687}},
  mse_sum = 3.40250015,
  mse_sum_da = {{0.600000024, -1, 2}, {-1, 1, -2.5}},
  mse_sum_db = {{-0.600000024, 1, -2}, {1, -1, 2.5}},
  mse_none = {{0.0900000036, 0.25, 1}, {0.25, 0.25, 1.5625}},
  mse_none_da = {{0.600000024, 2, 1}, {-0.300000012, 0.699999988, 2.75}},
  mse_none_db = {{-0.600000024, -2, -1}, {0.300000012, -0.699999988, -2.75}},
  bce_mean = 3.77753448,
  bce_mean_grad = {{-0.0629234388, 0.044823572, 0.116666667}, {1.55960399e-14, -0.0198671613, -0.0436960794}},
  bce_sum = 22.6652069,
  bce_sum_grad = {{-0.377540648, 0.268941432, 0.699999988}, {9.35762359e-14, -0.119202971, -0.262176484}},
  bce_none = {{0.474076986, 0.313261658, 21}, {0, 0.126928046, 0.750939429}},
  bce_none_grad = {{-0.377540648, -0.537882864, 0.349999994}, {2.80728725e-14, -0.083442077, 0.288394153}},
}
-- luacheck: pop

-- The fixed inputs and weights of the script above (class targets 1-based here).
local X = {{0.5, -1.2, 0.3, 2.0}, {-0.7, 0.1, -0.4, 1.5}, {1.1, -0.3, 0.8, -2.2}}
local W1 = {{0.2, -0.4, 0.1, 0.3}, {-0.3, 0.25, 0.5, -0.1}, {0.15, 0.05, -0.2, 0.4},
            {-0.45, -0.1, 0.35, 0.2}, {0.3, 0.3, -0.25, -0.35}}
local B1 = {0.05, -0.1, 0.2, 0.0, -0.05}
local W2 = {{0.4, -0.2, 0.3, 0.1, -0.5}, {-0.3, 0.45, -0.1, 0.25, 0.2}, {0.1, 0.2, -0.4, -0.35, 0.3}}
local B2 = {0.1, -0.2, 0.05}
local Y = {2, 3, 1}
local G3 = {{0.3, -0.5, 0.2, 0.7, -0.1}, {0.6, 0.4, -0.3, -0.2, 0.5}, {-0.4, 0.1, 0.9, 0.3, -0.6}}
local A = {{-2.5, -1.0, -0.25, 0.1, 0.3}, {0.75, 1.5, 3.0, -0.05, -4.0}}
local GA = {{0.5, -0.3, 0.8, 0.2, -0.6}, {0.1, 0.9, -0.4, 0.7, 0.3}}
local L = {{1.5, -0.3, 0.8, 2.1}, {-1.2, 0.4, 0.9, -0.5}, {0.3, 2.2, -1.7, 0.6}}
local LY = {2, 4, 1}
local GN = {0.5, -1.0, 2.0}
local MA, MB = {{0.5, -1.0, 2.0}, {1.5, 0.25, -0.75}}, {{0.2, -0.5, 1.0}, {2.0, -0.25, 0.5}}
local GM = {{1.0, -2.0, 0.5}, {0.3, 0.7, -1.1}}
local BX, BT = {{0.5, -1.0, 30.0}, {-30.0, 2.0, -0.25}}, {{1.0, 0.0, 0.3}, {0.0, 1.0, 0.7}}

local function leaf(values) return dn.tensor(values, {requires_grad = true}) end
local function labels(values) return dn.tensor(values, "int32") end

local function close(actual, expected, what) return H.assert_close(actual, expected, RTOL, ATOL, what) end

-- Runs fn(x) on a fresh leaf of `values`, backward(grad); returns output and input grad.
local function forward_backward(fn, values, grad)
  local x = leaf(values)
  local y = fn(x)
  y:backward(dn.tensor(grad))
  return y, x.grad
end

describe("nn.Linear", function()
  for _, act in ipairs {"none", "relu", "tanh", "sigmoid"} do
    it("forward and backward match PyTorch with activation " .. act, function()
      local opts = act ~= "none" and {activation = act} or nil
      local lin = nn.Linear(4, 5, opts)
      lin:load_state_dict({weight = W1, bias = B1})
      local y, dx = forward_backward(lin, X, G3)
      close(y, REF["linear_" .. act], "output")
      close(dx, REF["linear_" .. act .. "_dx"], "grad x")
      close(lin.weight.grad, REF["linear_" .. act .. "_dw"], "grad weight")
      close(lin.bias.grad, REF["linear_" .. act .. "_db"], "grad bias")
      -- the functional form is the same kernel
      local w, b = leaf(W1), leaf(B1)
      local y2 = F.linear(dn.tensor(X), w, b, act ~= "none" and act or nil)
      H.assert_same(y2, y)
    end)
  end

  it("without bias", function()
    local lin = nn.Linear(4, 5, {bias = false})
    assert.is_nil(lin.bias)
    assert.are.equal(1, #lin:parameters())
    lin:load_state_dict({weight = W1})
    local y, dx = forward_backward(lin, X, G3)
    close(y, REF.linear_nobias, "output")
    close(dx, REF.linear_nobias_dx, "grad x")
    close(lin.weight.grad, REF.linear_nobias_dw, "grad weight")
  end)

  it("takes a single sample [in] as well as a batch [B, in]", function()
    local lin = nn.Linear(4, 5)
    lin:load_state_dict({weight = W1, bias = B1})
    local y = lin(dn.tensor(X[2]))
    H.assert_shape(y, {5})
    close(y, REF.linear_none[2])
  end)

  it("default init is U(-1/sqrt(in), 1/sqrt(in)) for weight and bias (PyTorch's)", function()
    local lin = nn.Linear(400, 300)
    local bound = 1 / math.sqrt(400)
    local w = lin.weight
    assert.is_true(w:max():item() <= bound and w:min():item() >= -bound)
    -- the extremes come close to the bound: P(max < 0.99 bound) = 0.995^120000
    assert.is_true(w:max():item() > 0.99 * bound and w:min():item() < -0.99 * bound)
    -- mean 0 (sd of the mean 8.3e-5) and variance bound^2/3 (relative sd 0.26%)
    assert.is_true(math.abs(w:mean():item()) < 6e-4, "weight mean " .. w:mean():item())
    local var = (w * w):mean():item()
    assert.is_true(math.abs(var / (bound * bound / 3) - 1) < 0.03, "weight variance " .. var)
    local b = lin.bias
    assert.is_true(b:max():item() <= bound and b:min():item() >= -bound)
    assert.is_true(b:max():item() > 0.9 * bound and b:min():item() < -0.9 * bound)   -- 0.95^300
    assert.is_true(lin.weight.requires_grad and lin.bias.requires_grad)
  end)

  it("init draws from the default generator, or from {generator = g} reproducibly", function()
    local a, b = nn.Linear(3, 4), nn.Linear(3, 4)
    assert.is_false(a.weight:eq(b.weight):sum():item() == 12)
    local c = nn.Linear(3, 4, {generator = dn.Generator(7)})
    local d = nn.Linear(3, 4, {generator = dn.Generator(7)})
    H.assert_same(c.weight, d.weight)
    H.assert_same(c.bias, d.bias)
    d:reset_parameters({generator = dn.Generator(8)})
    assert.is_false(c.weight:eq(d.weight):sum():item() == 12)
  end)

  it("rejects bad constructor arguments", function()
    H.assert_error(function() nn.Linear(0, 3) end, {"Linear: in_features must be an integer >= 1 (got 0)"})
    H.assert_error(function() nn.Linear("a", 2) end, {"Linear: in_features must be an integer >= 1 (got \"a\")"})
    H.assert_error(function() nn.Linear(2, 2.5) end, {"Linear: out_features must be an integer >= 1 (got 2.5)"})
    H.assert_error(function() nn.Linear(2) end, {"Linear: out_features must be an integer >= 1 (got nil)"})
    H.assert_error(function() nn.Linear(2, 2, {bias = "yes"}) end, {"Linear: bias must be true or false (got \"yes\")"})
    H.assert_error(function() nn.Linear(2, 2, {activation = "gelu"}) end,
      {"Linear: activation must be one of \"relu\", \"tanh\", \"sigmoid\" (got \"gelu\")"})
    H.assert_error(function() nn.Linear(2, 2, {bais = true}) end,
      {"Linear: unknown option 'bais' (known: activation, bias, dropconnect, generator)"})
    H.assert_error(function() nn.Linear(2, 2, true) end, {"Linear: options must be a table (got boolean)"})
    H.assert_error(function() nn.Linear(2, 2, {generator = 1}) end,
      {"Linear: generator must be a dropnet.Generator (got 1)"})
  end)

  it("a wrong input shape is an error from the kernel naming linear and the shapes", function()
    local lin = nn.Linear(4, 5)
    local err = H.assert_error(function() lin(dn.zeros(3, 6)) end, {"linear"})
    assert.truthy(err:find("[3,6]", 1, true), err)
    assert.truthy(err:find("[5,4]", 1, true), err)
    H.assert_error(function() lin(dn.zeros(3, 4, "int32")) end, {"linear"})
    H.assert_error(function() lin("x") end, {"Tensor expected"})
  end)
end)

describe("nn activations", function()
  local cases = {
    {"ReLU", function() return nn.ReLU() end, "relu", F.relu},
    {"Sigmoid", function() return nn.Sigmoid() end, "sigmoid", F.sigmoid},
    {"Tanh", function() return nn.Tanh() end, "tanh", F.tanh},
    {"SELU", function() return nn.SELU() end, "selu", F.selu},
    {"LeakyReLU()", function() return nn.LeakyReLU() end, "leaky_relu", F.leaky_relu},
    {"LeakyReLU(0.2)", function() return nn.LeakyReLU(0.2) end, "leaky_relu_02",
      function(x) return F.leaky_relu(x, 0.2) end},
    {"ELU()", function() return nn.ELU() end, "elu", F.elu},
    {"ELU(0.5)", function() return nn.ELU({alpha = 0.5}) end, "elu_05", function(x) return F.elu(x, 0.5) end},
    {"GELU()", function() return nn.GELU() end, "gelu", F.gelu},
    {"GELU(tanh)", function() return nn.GELU({approximate = "tanh"}) end, "gelu_tanh",
      function(x) return F.gelu(x, "tanh") end},
    {"Softmax(2)", function() return nn.Softmax(2) end, "softmax_2", function(x) return F.softmax(x, 2) end},
    {"Softmax(-1)", function() return nn.Softmax(-1) end, "softmax_2", F.softmax},
    {"Softmax(1)", function() return nn.Softmax(1) end, "softmax_1", function(x) return F.softmax(x, 1) end},
    {"LogSoftmax(2)", function() return nn.LogSoftmax(2) end, "log_softmax_2",
      function(x) return F.log_softmax(x, 2) end},
    {"LogSoftmax(-2)", function() return nn.LogSoftmax(-2) end, "log_softmax_1",
      function(x) return F.log_softmax(x, -2) end},
  }
  for _, case in ipairs(cases) do
    local label, make, key, functional = case[1], case[2], case[3], case[4]
    it(label .. " forward and backward match PyTorch", function()
      local y, dx = forward_backward(make(), A, GA)
      close(y, REF[key], "output")
      close(dx, REF[key .. "_grad"], "grad")
      local y2, dx2 = forward_backward(functional, A, GA)
      H.assert_same(y2, y, "functional output")
      H.assert_same(dx2, dx, "functional grad")
    end)
  end

  it("print their options", function()
    assert.are.equal("ReLU()", tostring(nn.ReLU()))
    assert.are.equal("LeakyReLU(negative_slope=0.01)", tostring(nn.LeakyReLU()))
    assert.are.equal("ELU(alpha=0.5)", tostring(nn.ELU(0.5)))
    assert.are.equal("SELU()", tostring(nn.SELU()))
    assert.are.equal('GELU(approximate="none")', tostring(nn.GELU()))
    assert.are.equal('GELU(approximate="tanh")', tostring(nn.GELU("tanh")))
    assert.are.equal("Softmax(dim=-1)", tostring(nn.Softmax()))
    assert.are.equal("LogSoftmax(dim=1)", tostring(nn.LogSoftmax(1)))
    assert.are.equal("Identity()", tostring(nn.Identity()))
  end)

  it("reject bad options", function()
    H.assert_error(function() nn.GELU({approximate = "fast"}) end,
      {"GELU: approximate must be one of \"none\", \"tanh\" (got \"fast\")"})
    H.assert_error(function() nn.LeakyReLU("a") end, {"LeakyReLU: negative_slope must be a finite number (got \"a\")"})
    H.assert_error(function() nn.ELU({alpa = 1}) end, {"ELU: unknown option 'alpa'"})
    H.assert_error(function() nn.Softmax(0) end, {"Softmax: dims are 1-based"})
    H.assert_error(function() nn.LogSoftmax(1.5) end, {"LogSoftmax: dim must be an integer (got 1.5)"})
    H.assert_error(function() nn.Softmax(3)(dn.zeros(2, 2)) end, {"dim"})
    H.assert_error(function() F.gelu(dn.zeros(1), "exact") end, {"gelu: approximate must be one of"})
  end)

  it("Sigmoid and Tanh of saturated inputs stay finite", function()
    local y = nn.Sigmoid()(dn.tensor({-1e4, 1e4}))
    close(y, {0, 1})
    close(nn.Tanh()(dn.tensor({-1e4, 1e4})), {-1, 1})
    close(nn.Softmax()(dn.tensor({{1e4, -1e4, 0}})), {{1, 0, 0}})
    close(nn.LogSoftmax()(dn.tensor({{1e4, 0}})), {{0, -1e4}})
  end)
end)

describe("nn.Flatten and nn.Identity", function()
  it("Flatten merges dims start..end", function()
    local x = dn.arange(120):view(2, 3, 4, 5)
    H.assert_shape(nn.Flatten()(x), {2, 60})
    H.assert_shape(nn.Flatten(2, 3)(x), {2, 12, 5})
    H.assert_shape(nn.Flatten(1, -1)(x), {120})
    H.assert_shape(nn.Flatten(-2)(x), {2, 3, 20})
    H.assert_shape(nn.Flatten(3, 3)(x), {2, 3, 4, 5})
    H.assert_same(nn.Flatten()(x), x:reshape(2, 60))
    H.assert_same(nn.Flatten()(x:transpose(2, 4)), x:transpose(2, 4):contiguous():view(2, 60))   -- non-contiguous
  end)

  it("Flatten passes gradients back in the input's shape", function()
    local x = leaf(H.rand_values({2, 3, 2}))
    local g = H.rand_values({2, 6})
    nn.Flatten()(x):backward(dn.tensor(g))
    H.assert_same(x.grad, dn.tensor(g):view(2, 3, 2))
  end)

  it("Flatten errors name the dims and the input", function()
    H.assert_error(function() nn.Flatten()(dn.zeros(4)) end,
      {"Flatten: dims 2..-1 out of range for a 1-D input of shape [4]"})
    H.assert_error(function() nn.Flatten(3, 2)(dn.zeros(2, 2, 2)) end, {"Flatten: dims 3..2 out of range"})
    H.assert_error(function() nn.Flatten(0) end, {"Flatten: dims are 1-based"})
    H.assert_error(function() nn.Flatten()(5) end, {"Flatten: a tensor expected (got 5)"})
  end)

  it("Unflatten splits a dim and undoes Flatten", function()
    local x = dn.tensor(H.rand_values({2, 12, 5}))
    H.assert_shape(nn.Unflatten(2, {3, 4})(x), {2, 3, 4, 5})
    H.assert_shape(nn.Unflatten(-1, {5, 1})(x), {2, 12, 5, 1})
    H.assert_same(nn.Flatten(2, 3)(nn.Unflatten(2, {3, 4})(x)), x)
    H.assert_same(nn.Unflatten(2, {1, 28, 28})(dn.arange(784):reshape(1, 784)), dn.arange(784):reshape(1, 1, 28, 28))
    local leafx = leaf(H.rand_values({2, 6}))
    local g = H.rand_values({2, 2, 3})
    nn.Unflatten(2, {2, 3})(leafx):backward(dn.tensor(g))
    H.assert_same(leafx.grad, dn.tensor(g):view(2, 6))
  end)

  it("Unflatten errors name the sizes and the input", function()
    H.assert_error(function() nn.Unflatten(2, {3, 5})(dn.zeros(2, 12)) end,
      {"Unflatten: sizes [3,5] (product 15) do not split dim 2 of size 12 (input [2,12])"})
    H.assert_error(function() nn.Unflatten(3, {1})(dn.zeros(2, 12)) end,
      {"Unflatten: dim 3 out of range for a 2-D input"})
    H.assert_error(function() nn.Unflatten(0, {1}) end, {"Unflatten: dims are 1-based"})
    H.assert_error(function() nn.Unflatten(2, {}) end, {"Unflatten: sizes must be a non-empty table"})
    H.assert_error(function() nn.Unflatten(2, {2, 0}) end, {"Unflatten: sizes[2] must be positive"})
    H.assert_error(function() nn.Unflatten(2, {2})(5) end, {"Unflatten: a tensor expected (got 5)"})
  end)

  it("Identity returns its input", function()
    local x = dn.zeros(2)
    assert.are.equal(x, nn.Identity(5, "ignored")(x))
  end)
end)

describe("a small MLP", function()
  local function mlp()
    local m = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    m:load_state_dict({["1.weight"] = W1, ["1.bias"] = B1, ["3.weight"] = W2, ["3.bias"] = B2})
    return m
  end

  it("forward, cross-entropy loss and every gradient match PyTorch", function()
    local m = mlp()
    local logits = m(dn.tensor(X))
    close(logits, REF.mlp_logits, "logits")
    local loss = nn.CrossEntropyLoss()(logits, labels(Y))
    H.assert_shape(loss, {})
    close(loss:item(), REF.mlp_loss, "loss")
    loss:backward()
    close(m[1].weight.grad, REF.mlp_dw1, "grad 1.weight")
    close(m[1].bias.grad, REF.mlp_db1, "grad 1.bias")
    close(m[3].weight.grad, REF.mlp_dw2, "grad 3.weight")
    close(m[3].bias.grad, REF.mlp_db2, "grad 3.bias")
  end)

  it("Sequential's fused Linear+ReLU gives exactly the layer-by-layer results", function()
    local fused, plain = mlp(), mlp()
    local x = dn.tensor(X)
    local a = fused(x)
    local b = plain[3](plain[2](plain[1](x)))
    H.assert_same(a, b, "logits")
    F.cross_entropy(a, labels(Y)):backward()
    F.cross_entropy(b, labels(Y)):backward()
    for i, p in ipairs(fused:named_parameters()) do
      H.assert_same(p[2].grad, plain:parameters()[i].grad, p[1])
    end
    -- the layers stay separate modules
    assert.are.equal(3, #fused)
    assert.are.equal("ReLU", fused[2].__name)
  end)

  for _, case in ipairs {{"ReLU", "relu"}, {"Tanh", "tanh"}, {"Sigmoid", "sigmoid"}} do
    it("Sequential fuses Linear+" .. case[1] .. " without changing any result", function()
      local function pair()
        local m = nn.Sequential(nn.Linear(4, 5), nn[case[1]]())
        m:load_state_dict({["1.weight"] = W1, ["1.bias"] = B1})
        return m
      end
      local fused, plain = pair(), pair()
      local xa, xb = leaf(X), leaf(X)
      local a = fused(xa)
      local b = plain[2](plain[1](xb))
      H.assert_same(a, b, "output")
      close(a, REF["linear_" .. case[2]], "output vs PyTorch")
      a:backward(dn.tensor(G3))
      b:backward(dn.tensor(G3))
      H.assert_same(xa.grad, xb.grad, "grad x")
      H.assert_same(fused[1].weight.grad, plain[1].weight.grad, "grad weight")
      H.assert_same(fused[1].bias.grad, plain[1].bias.grad, "grad bias")
    end)
  end

  it("Sequential never fuses a subclass that overrides forward", function()
    local NegLinear = nn.Linear:extend("NegLinear")
    function NegLinear:forward(x) return -nn.Linear.forward(self, x) end
    local m = nn.Sequential(NegLinear(2, 2), nn.ReLU())
    m:load_state_dict({["1.weight"] = {{1, 0}, {0, 1}}, ["1.bias"] = {0, 0}})
    H.assert_same(m(dn.tensor({{1, -1}})), {{0, 1}})
  end)

  it("works in eval mode and under no_grad, recording nothing", function()
    local m = mlp():eval()
    local out = dn.no_grad(function() return m(dn.tensor(X)) end)
    assert.is_false(out.requires_grad)
    close(out, REF.mlp_logits)
    assert.are.same({3}, out:argmax(2):shape())
  end)
end)

describe("nn losses", function()
  it("CrossEntropyLoss matches PyTorch for every reduction and label smoothing", function()
    for _, red in ipairs {"mean", "sum"} do
      for _, ls in ipairs {0, 0.1} do
        local tag = "ce_" .. red .. (ls > 0 and "_ls" or "")
        local x = leaf(L)
        local loss = nn.CrossEntropyLoss({reduction = red, label_smoothing = ls})(x, labels(LY))
        close(loss:item(), REF[tag], tag)
        loss:backward()
        close(x.grad, REF[tag .. "_grad"], tag .. " grad")
      end
    end
    local y, dx = forward_backward(function(x) return nn.CrossEntropyLoss({reduction = "none"})(x, labels(LY)) end,
      L, GN)
    close(y, REF.ce_none, "none")
    close(dx, REF.ce_none_grad, "none grad")
    y, dx = forward_backward(function(x) return F.cross_entropy(x, labels(LY), {reduction = "none",
      label_smoothing = 0.2}) end, L, GN)
    close(y, REF.ce_none_ls02, "none, smoothing 0.2")
    close(dx, REF.ce_none_ls02_grad, "none, smoothing 0.2 grad")
  end)

  it("CrossEntropyLoss is stable for logits of +-1e4", function()
    local x = leaf({{1e4, -1e4, 0}, {-1e4, 1e4, 5e3}})
    local loss = nn.CrossEntropyLoss()(x, labels({1, 3}))
    close(loss:item(), REF.ce_big)
    loss:backward()
    close(x.grad, REF.ce_big_grad)
  end)

  it("NLLLoss matches PyTorch", function()
    for _, red in ipairs {"mean", "sum"} do
      local x = leaf(L)
      local loss = nn.NLLLoss({reduction = red})(x, labels(LY))
      close(loss:item(), REF["nll_" .. red])
      loss:backward()
      close(x.grad, REF["nll_" .. red .. "_grad"])
    end
    local y, dx = forward_backward(function(x) return F.nll_loss(x, labels(LY), "none") end, L, GN)
    close(y, REF.nll_none)
    close(dx, REF.nll_none_grad)
    -- log_softmax + NLL is cross entropy
    local z = dn.tensor(L)
    close(F.nll_loss(F.log_softmax(z, 2), labels(LY)):item(), REF.ce_mean)
  end)

  it("MSELoss matches PyTorch, with gradients for both arguments", function()
    for _, red in ipairs {"mean", "sum", "none"} do
      local a, b = leaf(MA), leaf(MB)
      local loss = nn.MSELoss({reduction = red})(a, b)
      if red == "none" then
        close(loss, REF.mse_none)
        loss:backward(dn.tensor(GM))
      else
        close(loss:item(), REF["mse_" .. red])
        loss:backward()
      end
      close(a.grad, REF["mse_" .. red .. "_da"], red .. " grad a")
      close(b.grad, REF["mse_" .. red .. "_db"], red .. " grad b")
    end
    close(F.mse_loss(dn.tensor(MA), dn.tensor(MB)):item(), REF.mse_mean)
  end)

  it("BCEWithLogitsLoss matches PyTorch, stable for logits of +-30", function()
    for _, red in ipairs {"mean", "sum", "none"} do
      local x = leaf(BX)
      local loss = nn.BCEWithLogitsLoss({reduction = red})(x, dn.tensor(BT))
      if red == "none" then
        close(loss, REF.bce_none)
        loss:backward(dn.tensor(GM))
      else
        close(loss:item(), REF["bce_" .. red])
        loss:backward()
      end
      close(x.grad, REF["bce_" .. red .. "_grad"], red .. " grad")
    end
    close(F.binary_cross_entropy_with_logits(dn.tensor(BX), dn.tensor(BT), "sum"):item(), REF.bce_sum)
  end)

  it("print their non-default options", function()
    assert.are.equal("CrossEntropyLoss()", tostring(nn.CrossEntropyLoss()))
    assert.are.equal('CrossEntropyLoss(label_smoothing=0.1, reduction="sum")',
      tostring(nn.CrossEntropyLoss({label_smoothing = 0.1, reduction = "sum"})))
    assert.are.equal('MSELoss(reduction="none")', tostring(nn.MSELoss("none")))
  end)

  it("reject bad options and bad targets", function()
    H.assert_error(function() nn.CrossEntropyLoss({reduction = "avg"}) end,
      {"CrossEntropyLoss: reduction must be one of \"mean\", \"sum\", \"none\" (got \"avg\")"})
    H.assert_error(function() nn.CrossEntropyLoss({label_smoothing = 1.5}) end,
      {"CrossEntropyLoss: label_smoothing must be in [0, 1] (got 1.5)"})
    H.assert_error(function() nn.MSELoss({reduce = "sum"}) end, {"MSELoss: unknown option 'reduce' (known: reduction)"})
    H.assert_error(function() F.mse_loss(dn.zeros(1), dn.zeros(1), "avg") end, {"mse_loss: reduction must be one of"})
    local ce = nn.CrossEntropyLoss()
    local logits = dn.zeros(3, 4)
    H.assert_error(function() ce(logits, dn.tensor({1, 2, 3})) end, {"int32"})           -- float labels
    H.assert_error(function() ce(logits, labels({1, 5, 2})) end, {"5"})                   -- out of range
    H.assert_error(function() ce(logits, labels({0, 1, 2})) end, {"0"})                   -- 1-based
    H.assert_error(function() ce(logits, labels({1, 2})) end, {"[3,4]"})                  -- batch mismatch
    H.assert_error(function() nn.NLLLoss()(logits, labels({1, 2, 9})) end, {"9"})
    H.assert_error(function() nn.MSELoss()(dn.zeros(2, 3), dn.zeros(3, 2)) end, {"[2,3]", "[3,2]"})
    H.assert_error(function() nn.BCEWithLogitsLoss()(dn.zeros(2), dn.zeros(3)) end, {"[2]", "[3]"})
  end)
end)

describe("nn.init", function()
  local init = nn.init
  local function stats(t)
    local mean = t:mean():item()
    local var = ((t - mean) * (t - mean)):mean():item()
    return mean, var, t:min():item(), t:max():item()
  end

  it("uniform_, normal_, constant_, zeros_ and ones_ fill in place and return the tensor", function()
    local t = dn.zeros(200, 300)
    assert.are.equal(t, init.uniform_(t, -2, 3))
    local mean, var, lo, hi = stats(t)
    assert.is_true(lo >= -2 and hi <= 3 and lo < -1.99 and hi > 2.99)
    -- 60000 samples: the mean has sd 0.0059, the variance a relative sd of 0.0037
    assert.is_true(math.abs(mean - 0.5) < 0.03, "mean " .. mean)
    assert.is_true(math.abs(var / (25 / 12) - 1) < 0.02, "var " .. var)
    init.normal_(t, 1, 0.5)
    mean, var = stats(t)
    assert.is_true(math.abs(mean - 1) < 0.012, "mean " .. mean)           -- sd 0.0020
    assert.is_true(math.abs(var / 0.25 - 1) < 0.03, "var " .. var)        -- relative sd 0.0058
    init.constant_(t, 0.25)
    assert.are.equal(0.25, t:min():item())
    assert.are.equal(0.25, t:max():item())
    init.zeros_(t)
    assert.are.equal(0, t:abs():max():item())
    init.ones_(t)
    assert.are.equal(60000, t:sum():item())
  end)

  it("works on parameters that require grad, recording nothing", function()
    local lin = nn.Linear(3, 3)
    init.xavier_uniform_(lin.weight)
    init.zeros_(lin.bias)
    assert.is_true(lin.weight.is_leaf and lin.weight.requires_grad)
    assert.is_nil(lin.weight.grad_fn)
    H.assert_same(lin.bias, {0, 0, 0})
  end)

  it("xavier and kaiming use PyTorch's fans and gains", function()
    local t = dn.zeros(300, 200)          -- fan_in 200, fan_out 300
    init.xavier_uniform_(t)
    local bound = math.sqrt(6 / 500)
    local _, var, lo, hi = stats(t)
    assert.is_true(lo >= -bound and hi <= bound and hi > 0.99 * bound)
    assert.is_true(math.abs(var / (bound * bound / 3) - 1) < 0.03)
    init.xavier_uniform_(t, 2)
    assert.is_true(t:max():item() > 0.99 * 2 * bound)
    init.xavier_normal_(t, {gain = 0.5})
    _, var = stats(t)
    assert.is_true(math.abs(var / (0.25 * 2 / 500) - 1) < 0.03)
    init.kaiming_uniform_(t)              -- leaky_relu, a = 0: gain sqrt(2), fan_in
    bound = math.sqrt(2) * math.sqrt(3 / 200)
    _, _, lo, hi = stats(t)
    assert.is_true(lo >= -bound and hi <= bound and hi > 0.99 * bound)
    init.kaiming_uniform_(t, {mode = "fan_out", nonlinearity = "relu"})
    bound = math.sqrt(2) * math.sqrt(3 / 300)
    assert.is_true(t:max():item() <= bound and t:max():item() > 0.99 * bound)
    init.kaiming_normal_(t, 0, "fan_in", "linear")
    _, var = stats(t)
    assert.is_true(math.abs(var / (1 / 200) - 1) < 0.03, "var " .. var)
    local w = dn.zeros(64, 16, 3, 3)      -- a conv weight: fan_in 144, fan_out 576
    init.kaiming_normal_(w, {nonlinearity = "relu"})
    _, var = stats(w)
    assert.is_true(math.abs(var / (2 / 144) - 1) < 0.08, "var " .. var)  -- 9216 samples: relative sd 0.015
    assert.are.same({144, 576}, {init.fans(w)})
  end)

  it("calculate_gain follows PyTorch's table", function()
    assert.are.equal(1, init.calculate_gain("linear"))
    assert.are.equal(1, init.calculate_gain("sigmoid"))
    assert.are.equal(5 / 3, init.calculate_gain("tanh"))
    assert.are.equal(math.sqrt(2), init.calculate_gain("relu"))
    assert.are.equal(math.sqrt(2 / (1 + 0.01 ^ 2)), init.calculate_gain("leaky_relu"))
    assert.are.equal(math.sqrt(2 / (1 + 0.2 ^ 2)), init.calculate_gain("leaky_relu", 0.2))
    assert.are.equal(0.75, init.calculate_gain("selu"))
    H.assert_error(function() init.calculate_gain("swish") end, {"unsupported nonlinearity \"swish\""})
  end)

  it("a generator makes the draw reproducible", function()
    local a, b = dn.zeros(5, 5), dn.zeros(5, 5)
    init.kaiming_uniform_(a, {generator = dn.Generator(3)})
    init.kaiming_uniform_(b, {generator = dn.Generator(3)})
    H.assert_same(a, b)
    init.normal_(a, 0, 1, {generator = dn.Generator(4)})
    init.normal_(b, {generator = dn.Generator(4)})
    H.assert_same(a, b)
  end)

  it("rejects bad arguments", function()
    H.assert_error(function() init.xavier_uniform_(dn.zeros(5)) end, {"at least 2 dims (got 1-D)"})
    H.assert_error(function() init.uniform_({}, 0, 1) end, {"init.uniform_: a tensor expected (got table)"})
    H.assert_error(function() init.uniform_(dn.zeros(2), 1, 0) end, {"a must be <= b"})
    H.assert_error(function() init.normal_(dn.zeros(2), 0, -1) end, {"std must be >= 0"})
    H.assert_error(function() init.kaiming_uniform_(dn.zeros(2, 2), {mode = "fan_avg"}) end,
      {"mode must be one of \"fan_in\", \"fan_out\""})
    H.assert_error(function() init.kaiming_uniform_(dn.zeros(2, 2), {generator = 5}) end,
      {"init.kaiming_uniform_: generator must be a dropnet.Generator (got 5)"})
    H.assert_error(function() init.uniform_(dn.zeros(2), 0, 1, {seed = 1}) end, {"unknown option 'seed'"})
  end)
end)

describe("nn.functional", function()
  it("is the same table as require 'dropnet.nn.functional'", function()
    assert.are.equal(require "dropnet.nn.functional", nn.functional)
    for _, name in ipairs {"relu", "leaky_relu", "elu", "selu", "gelu", "sigmoid", "tanh", "softmax", "log_softmax",
                           "linear", "cross_entropy", "nll_loss", "mse_loss", "binary_cross_entropy_with_logits"} do
      assert.are.equal("function", type(F[name]), name)
    end
  end)
end)

describe("a training loop", function()
  it("reduces the loss on a toy classification problem", function()
    local g = dn.Generator(1234)
    local x = dn.randn({256, 2}, g)
    -- class 2 inside the circle of radius 1, class 1 outside: not linearly separable
    local r2 = (x * x):sum(2)
    local y = r2:lt(1):int() + 1
    local model = nn.Sequential(nn.Linear(2, 16, {generator = g}), nn.Tanh(), nn.Linear(16, 2, {generator = g}))
    local loss_fn = nn.CrossEntropyLoss()
    local opt = dn.optim.SGD(model:parameters(), {lr = 0.5, momentum = 0.9})
    local first, last
    for step = 1, 60 do
      local loss = loss_fn(model(x), y)
      if step == 1 then first = loss:item() end
      last = loss:item()
      opt:zero_grad()
      loss:backward()
      opt:step()
    end
    assert.is_true(last < 0.5 * first, string.format("loss %.4f -> %.4f", first, last))
    model:eval()
    local accuracy = dn.no_grad(function() return model(x):argmax(2):eq(y):float():mean():item() end)
    assert.is_true(accuracy > 0.9, "accuracy " .. accuracy)
  end)
end)
