-- dropnet.nn normalization: F.batch_norm, nn.BatchNorm1d and nn.BatchNorm2d against PyTorch (train and
-- eval: values, gradients, running statistics), the buffers in state_dict and checkpoints, the modes, the
-- options and errors. The reference values come from PyTorch 1.13 in float64 (/usr/bin/python3); the
-- script that printed them is in the comment below.
local dn = require "dropnet"
local nn = require "dropnet.nn"
local checkpoint = require "dropnet.checkpoint"
local H = require "helpers"

local F = nn.functional
local RTOL, ATOL = 1e-5, 1e-5

-- luacheck: push ignore 631 (the generating script and its output, pasted as they are)
--[==[ Reference values: /usr/bin/python3 this script > ref.txt, pasted into REF below.
import torch, torch.nn.functional as F
torch.set_default_dtype(torch.float64)
def lua(t):
    if isinstance(t, torch.Tensor): t = t.detach().reshape(-1).tolist()
    if isinstance(t, list): return "{" + ", ".join(lua(v) for v in t) + "}"
    return "%.10g" % t
def pattern(n, a, m, scale, shift): return torch.tensor([((i * a) % m) * scale + shift for i in range(n)])
X = pattern(72, 29, 72, 0.125, -4)            # [4, 3, 2, 3], [6, 3, 4], [24, 3]
W, B = pattern(3, 5, 7, 0.25, 0.5), pattern(3, 3, 5, 0.5, -1)
RM, RV = pattern(3, 2, 5, 0.3, -0.4), pattern(3, 4, 7, 0.2, 0.5)
def weights(n): return torch.tensor([((i * 13) % 17) / 8 - 1 for i in range(n)])
CASES = [
  ("train_2d", [4, 3, 2, 3], True, True, 0.1, 1e-5),
  ("eval_2d", [4, 3, 2, 3], True, False, 0.1, 1e-5),
  ("train_1d_ncl", [6, 3, 4], True, True, 0.3, 1e-3),
  ("train_1d_nc_no_affine", [24, 3], False, True, 0.1, 1e-5),
  ("eval_1d_nc", [24, 3], True, False, 0.1, 1e-2),
]
for name, shape, affine, training, momentum, eps in CASES:
    x = X.clone().view(shape).requires_grad_()
    w, b = (W.clone().requires_grad_(), B.clone().requires_grad_()) if affine else (None, None)
    rm, rv = RM.clone(), RV.clone()
    y = F.batch_norm(x, rm, rv, w, b, training, momentum, eps)
    (y * weights(y.numel()).view(y.shape)).sum().backward()
    extra = ", dw = %s, db = %s" % (lua(w.grad), lua(b.grad)) if affine else ""
    print("  %s = {y = %s, dx = %s%s, running_mean = %s, running_var = %s}," % (name, lua(y), lua(x.grad), extra, lua(rm), lua(rv)))
# the module: two training steps (the second on 2 * X), then eval
m = torch.nn.BatchNorm2d(3, momentum=0.2)
x = X.clone().view(4, 3, 2, 3)
m(x); m(2 * x); m.eval()
print("  module = {running_mean = %s, running_var = %s, num_batches_tracked = %d, eval_y = %s}," % (lua(m.running_mean), lua(m.running_var), m.num_batches_tracked.item(), lua(m(x))))
]==]
local REF = {
  train_2d = {y = {-1.804102339, -1.108013747, -0.4119251552, -1.444056515, -0.7479679237, -1.780099284, -0.04988450195, 2.403446353, -1.234251122, 1.219079733, -2.418617741, 0.03471311373, 0.9200314061, -1.678323933, 0.07405524929, -2.52430009, -0.7719209076, 0.9804582745, -1.372047351, -0.675958759, -1.708090119, -1.012001527, -0.3159129357, -1.348044296, 1.47287258, -2.164824894, 0.2885059608, 2.741836816, -0.8958606588, 1.557470196, -2.343019485, -0.5906403025, 1.16173888, -1.436616459, 0.3157627227, -2.282592616, -0.9399923628, -0.243903771, -1.276035131, -0.5799465395, -1.6120779, -0.9159893079, 2.995629663, -0.6420678117, 1.811263043, -1.826434431, 0.6268964235, 3.080227278, -1.255335854, 0.4970433277, -2.101312011, -0.3489328291, 1.403446353, -1.194908986, -0.5079373748, -1.540068735, -0.8439801432, -0.1478915515, -1.180022912, -0.4839343199, -1.572641584, 0.8806892706, 3.334020125, -0.303677349, 2.149653506, -1.488043969, -0.1676522241, 1.584726958, -1.013628381, 0.7387508011, -1.859604538, -0.1072253557}, dx = {-0.1496503521, 0.1386940434, 0.01898650587, -0.04189127663, -0.1615988142, 0.1855753364, 0.1040336369, -0.2738919426, -0.5536613701, 0.506572517, 0.2268030895, -0.15112249, -0.1797931199, 0.4325749058, 0.3076640981, -0.1072246382, -0.2321354459, -0.3570462537, 0.1476819227, 0.02797438512, -0.03290339738, -0.1526109349, 0.1357334606, 0.07485567809, -0.2588958638, -0.5386652913, 0.5215685958, 0.1436430163, -0.1361264112, -0.5140519908, 0.3882727223, 0.2633619145, 0.1384511068, -0.2764376294, -0.4013484372, 0.2110195885, 0.03696226436, -0.08274527321, -0.1436230557, 0.1447213398, 0.08384355734, -0.03586398023, -0.6218253645, 0.5365646746, 0.1586390951, -0.1211303325, -0.499055912, 0.5611779752, 0.219059731, 0.09414892327, -0.320739813, -0.4456506207, 0.4566953334, 0.04180659721, -0.07375739396, -0.1346351765, 0.1537092191, 0.03400168151, -0.02687610098, -0.1465836386, 0.5515607533, 0.1736351738, -0.2042904057, -0.4840598332, 0.5761740539, 0.2964046264, 0.04984673975, -0.075064068, -0.4899528042, 0.4123931499, -0.002495586313, -0.1274063941}, dw = {2.127270739, 1.000064671, -4.136219138}, db = {-1.875, 2.625, -1.375}, running_mean = {-0.34125, 0.23625, 0.77625}, running_var = {1.157472826, 1.867690217, 1.327690217}},
  eval_2d = {y = {-3.545558957, -0.9823225072, 1.580913942, -2.219747, 0.3434894494, -3.457171493, -0.1906805337, 5.373134877, -2.876660387, 2.687155024, -5.562640241, 0.001175170072, 3.533867743, -4.496517116, 0.9193238356, -7.111061024, -1.695220072, 3.72062088, -1.954584609, 0.6086518408, -3.192009102, -0.6287726521, 1.934463797, -1.866197145, 3.262722135, -4.987073129, 0.5767422815, 6.140557692, -2.109237572, 3.454577839, -6.550801615, -1.134960663, 4.280880288, -3.749504571, 1.666336381, -6.364048479, -0.3636102608, 2.199626189, -1.601034754, 0.9622016959, -2.838459247, -0.275222797, 6.716124804, -1.53367046, 4.03014495, -4.219650314, 1.344165097, 6.907980508, -3.189245162, 2.226595789, -5.80378907, -0.3879481182, 5.027892833, -3.002492026, 1.227364087, -2.573296855, -0.01006040569, 2.553176044, -1.247484899, 1.315751551, -3.644083202, 1.919732208, 7.483547619, -0.7662476452, 4.797567766, -3.452227499, 0.1723112905, 5.588152242, -2.442232617, 2.973608334, -5.056776525, 0.3590644268}, dx = {-0.7070997102, 0.4419373189, 0.08838746378, -0.2651623913, -0.6187122464, 0.5303247827, 0.3837114076, -0.3837114076, -1.151134223, 1.342989927, 0.5755671115, -0.1918557038, -0.9337656813, 1.49402509, 0.747012545, 0, -0.747012545, -1.49402509, 0.4419373189, 0.08838746378, -0.2651623913, -0.6187122464, 0.5303247827, 0.1767749276, -0.3837114076, -1.151134223, 1.342989927, 0.5755671115, -0.1918557038, -0.9592785191, 1.49402509, 0.747012545, 0, -0.747012545, -1.49402509, 0.9337656813, 0.08838746378, -0.2651623913, -0.6187122464, 0.5303247827, 0.1767749276, -0.1767749276, -1.151134223, 1.342989927, 0.5755671115, -0.1918557038, -0.9592785191, 1.534845631, 0.747012545, 0, -0.747012545, -1.49402509, 0.9337656813, 0.1867531363, -0.2651623913, -0.6187122464, 0.5303247827, 0.1767749276, -0.1767749276, -0.5303247827, 1.342989927, 0.5755671115, -0.1918557038, -0.9592785191, 1.534845631, 0.7674228153, 0, -0.747012545, -1.49402509, 0.9337656813, 0.1867531363, -0.5602594088}, dw = {6.275509928, 3.10258081, -12.39293812}, db = {-1.875, 2.625, -1.375}, running_mean = {-0.4, 0.2, 0.8}, running_var = {0.5, 1.3, 0.7}},
  train_1d_ncl = {y = {-1.828681682, -1.132108674, -0.4355356658, -1.468385299, 1.130518671, -2.484455044, -0.04644951502, 2.391556014, -1.679155452, 0.07446034859, -2.525728598, -0.7721127967, -0.387496148, -1.420345781, -0.7237727726, -1.756622405, 0.1216887973, 2.559694326, -1.055279389, 1.38272614, -2.404789577, -0.6511737759, 1.102442025, -1.497746921, -0.6757332548, -1.708582888, -1.012009879, -0.3154368713, -0.8871410766, 1.550864452, -2.064109263, 0.3738962658, 1.223381046, -1.3768079, 0.3768079005, -2.223381046, -0.9639703616, -0.2673973535, -1.300246986, -0.6036739781, -1.89597095, 0.5420345781, 2.980040107, -0.6349336081, 0.4977469212, -2.102442025, -0.3488262241, 1.404789577, -1.252207468, -0.5556344603, -1.588484093, -0.8919110849, 3.148178419, -0.4667952958, 1.971210233, -1.643763482, -0.2278872033, 1.525728598, -1.074460349, 0.6791554524, -1.540444575, -0.8438715671, -0.147298559, -1.180148192, 2.139348545, -1.47562517, 0.9623803589, 3.400385887, -0.9535213278, 0.8000944731, -1.800094473, -0.04647867217}, dx = {-0.1635370391, 0.127185383, 0.009571903727, -0.0545767499, -0.5410779353, 0.1996930408, 0.100898127, 0.002103213114, -0.2833123086, 0.4070357414, 0.3071401189, -0.03049350753, -0.1360317837, 0.208155464, 0.09054198471, 0.02639333108, -0.3871387609, -0.4859336748, 0.2548373013, 0.1560423875, -0.0622807768, -0.3999144032, 0.2904336467, 0.1905380243, -0.05506170275, -0.1192103564, 0.1715120657, 0.05389858642, -0.2331995866, -0.3319945004, 0.4087764757, 0.3099815618, -0.07898724898, -0.1788828714, -0.5165164979, 0.4115695561, 0.02590837823, -0.09170510104, -0.1558537547, 0.1348686674, -0.07926041222, -0.1780553261, -0.27685024, 0.4639207362, 0.1420442828, 0.04214866035, -0.2954849661, 0.3948630839, 0.1068784592, -0.01073502006, -0.07488367368, -0.192497153, 0.6642885268, -0.02411615172, -0.1229110656, -0.8113157441, 0.3630758146, 0.02544218816, -0.0744534343, -0.4120870608, 0.1878485402, 0.07023506092, -0.04737841835, -0.111527072, 0.8182277012, 0.1298230226, 0.03102810877, -0.06776680509, -0.44387433, 0.24647372, 0.1465780975, -0.191055529}, dw = {1.930588122, -6.083003942, 3.386292581}, db = {-0.375, 0.5, -0.75}, running_mean = {-0.18625, 0.30875, 0.69125}, running_var = {2.469157609, 3.029157609, 2.579809783}},
  train_1d_nc_no_affine = {y = {-1.66132354, -0.3611572913, 1.083471874, -0.9390089573, 0.3611572913, -1.66132354, -0.2166943748, 1.083471874, -0.9390089573, 0.5056202078, -1.66132354, -0.2166943748, 1.22793479, -0.9390089573, 0.5056202078, -1.516860623, -0.2166943748, 1.22793479, -0.7945460408, 0.5056202078, -1.516860623, -0.07223145825, 1.22793479, -0.7945460408, 0.6500831243, -1.516860623, -0.07223145825, 1.372397707, -0.7945460408, 0.6500831243, -1.372397707, -0.07223145825, 1.372397707, -0.6500831243, 0.6500831243, -1.372397707, 0.07223145825, 1.372397707, -0.6500831243, 0.7945460408, -1.372397707, 0.07223145825, 1.516860623, -0.6500831243, 0.7945460408, -1.22793479, 0.07223145825, 1.516860623, -0.5056202078, 0.7945460408, -1.22793479, 0.2166943748, 1.516860623, -0.5056202078, 0.9390089573, -1.22793479, 0.2166943748, 1.66132354, -0.5056202078, 0.9390089573, -1.083471874, 0.2166943748, 1.66132354, -0.3611572913, 0.9390089573, -1.083471874, 0.3611572913, 1.66132354, -0.3611572913, 1.083471874, -1.083471874, 0.3611572913}, dx = {-0.3898893474, 0.2327458099, 0.07020756976, -0.1453492276, -0.3451058561, 0.2906915091, 0.09919089213, -0.1043343286, -0.2818213179, 0.3437310119, 0.1364371989, -0.03571095143, -0.2303520619, 0.3772087264, 0.2103994151, -0.003901184889, -0.2006429396, -0.362113412, 0.2406389349, 0.04012858792, -0.1416294726, -0.3334441389, 0.2809001154, 0.1044808939, -0.08890401921, -0.2969515506, 0.3505912604, 0.1556361005, -0.05618002309, -0.2219215666, 0.3820869776, 0.1845915044, 0.02418879985, -0.1919960962, -0.3932601616, 0.2446727392, 0.05254402352, -0.1524886341, -0.3278400878, 0.2970841433, 0.08828289342, -0.08172972133, -0.2769989305, 0.3290544209, 0.1643806452, -0.0505480535, -0.2487972451, 0.4104910117, 0.1939920662, -0.008025717584, -0.1876482425, -0.3800910076, 0.2327458099, 0.05846212398, -0.1355508878, -0.3451058561, 0.3045724905, 0.1089892319, -0.1043343286, -0.2679403366, 0.335440109, 0.1364371989, -0.02182997005, -0.2386429648, 0.3772087264, 0.1986539693, 0.005897154906, -0.2006429396, -0.3738588577, 0.2504372746, 0.04012858792, -0.1277484912}, running_mean = {-0.32875, 0.23625, 0.76375}, running_var = {1.153125, 1.873125, 1.333125}},
  eval_1d_nc = {y = {-3.520504151, -0.379164707, 3.134518828, -2.207741572, 2.487676729, -7.435255315, -0.8949789937, 5.354518165, -4.653735804, 0.4177835851, -5.539479292, -1.872216292, 1.730546164, -2.672637856, 0.9093032191, -3.257951635, 0.1942035802, 3.69082273, -1.945189057, 3.061045016, -6.878951413, -0.6324264779, 5.927886452, -4.097431901, 0.6803361008, -4.966111004, -1.31591239, 1.99309868, -2.099269569, 1.465607121, -2.99539912, 0.7675718674, 4.247126633, -1.682636541, 3.634413303, -6.322647511, -0.3698739622, 6.501254739, -3.541127999, 0.9428886166, -4.392742717, -0.7596084877, 2.255651195, -1.525901281, 2.021911024, -2.732846604, 1.340940155, 4.803430535, -1.420084025, 4.20778159, -5.766343608, -0.1073214464, 7.074623026, -2.984824097, 1.205441132, -3.81937443, -0.2033045855, 2.518203711, -0.9525329942, 2.578214926, -2.470294088, 1.914308442, 5.359734437, -1.157531509, 4.781149878, -5.210039706, 0.1552310693, 7.647991314, -2.428520195, 1.467993648, -3.246006143, 0.3529993168}, dx = {-0.700140042, 0.955613812, 0.1854346341, -0.2625525158, -1.337859337, 1.112607805, 0.1750350105, -0.3822455248, -1.112607805, 0.6126225368, 0.5733682872, -0.1854346341, -0.4375875263, 1.528982099, 0.7417385364, 0, -0.7644910496, -1.483477073, 0.4375875263, 0.1911227624, -0.5563039023, -0.6126225368, 1.146736574, 0.3708692682, -0.1750350105, -1.146736574, 1.298042439, 0.2625525158, -0.1911227624, -0.9271731705, 0.700140042, 0.7644910496, 0, -0.350070021, -1.528982099, 0.9271731705, 0.08751750525, -0.5733682872, -1.298042439, 0.5251050315, 0.3822455248, -0.3708692682, -0.5251050315, 1.337859337, 0.5563039023, -0.08751750525, -0.955613812, 1.483477073, 0.350070021, 0, -0.7417385364, -0.700140042, 0.955613812, 0.1854346341, -0.2625525158, -1.337859337, 1.112607805, 0.1750350105, -0.3822455248, -1.112607805, 0.6126225368, 0.5733682872, -0.1854346341, -0.4375875263, 1.528982099, 0.7417385364, 0, -0.7644910496, -1.483477073, 0.4375875263, 0.1911227624, -0.5563039023}, dw = {-1.430911211, 0.1583588603, -1.042142644}, db = {-0.25, 0.5, -0.875}, running_mean = {-0.4, 0.2, 0.8}, running_var = {0.5, 1.3, 0.7}},
  module = {running_mean = {0.105, 0.315, 0.315}, running_var = {7.43173913, 7.337826087, 7.337826087}, num_batches_tracked = 2, eval_y = {-1.505801207, -0.1760741972, 1.153652813, -0.8180113744, 0.5117156356, -1.459948552, -0.208576053, 1.129633136, -0.8546080754, 0.4836011139, -1.500640098, -0.1624309085, 1.175778281, -0.8084629309, 0.5297462584, -1.454494953, -0.116285764, 1.221923425, -0.6804534079, 0.6492736021, -1.322390585, 0.007336424883, 1.337063435, -0.6346007523, 0.6220365473, -1.362204664, -0.02399547512, 1.314213714, -0.6700274975, 0.6681816918, -1.31605952, 0.02214966934, 1.360358859, -0.6238823531, 0.7143268362, -1.269914375, 0.1448943914, 1.474621401, -0.4970427858, 0.8326842242, -1.138979963, 0.1907470469, 1.452649148, -0.5315920642, 0.8066171251, -1.177624087, 0.1605851027, 1.498794292, -0.4854469197, 0.8527622696, -1.131478942, 0.2067302472, 1.544939436, -0.4393017752, 0.9702421907, -1.001421996, 0.3283050135, 1.658032023, -0.3136321637, 1.016094846, -1.039188653, 0.2990205361, 1.637229725, -0.3470114863, 0.991197703, -0.9930435087, 0.3451656805, 1.68337487, -0.3008663419, 1.037342847, -0.9468983643, 0.391310825}},
}
-- luacheck: pop

-- The script's tensors.
local function pattern(n, a, m, scale, shift)
  local v = {}
  for i = 0, n - 1 do v[i + 1] = ((i * a) % m) * scale + shift end
  return dn.tensor(v)
end
local function X(shape) return pattern(72, 29, 72, 0.125, -4):reshape(shape) end
local function W() return pattern(3, 5, 7, 0.25, 0.5) end
local function B() return pattern(3, 3, 5, 0.5, -1) end
local function RM() return pattern(3, 2, 5, 0.3, -0.4) end
local function RV() return pattern(3, 4, 7, 0.2, 0.5) end
local function weights(shape)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  local v = {}
  for i = 0, n - 1 do v[i + 1] = ((i * 13) % 17) / 8 - 1 end
  return dn.tensor(v):reshape(shape)
end
local function flat(t) return t:reshape(t:numel()):totable() end

-- The script's CASES: shape, affine, training, momentum, eps.
local CASES = {
  train_2d = {{4, 3, 2, 3}, true, true, 0.1, 1e-5},
  eval_2d = {{4, 3, 2, 3}, true, false, 0.1, 1e-5},
  train_1d_ncl = {{6, 3, 4}, true, true, 0.3, 1e-3},
  train_1d_nc_no_affine = {{24, 3}, false, true, 0.1, 1e-5},
  eval_1d_nc = {{24, 3}, true, false, 0.1, 1e-2},
}

describe("batch_norm against PyTorch", function()
  local names = {}
  for name in pairs(CASES) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    it(name .. ": values, gradients and running statistics", function()
      local c, ref = CASES[name], assert(REF[name], name)
      local x = X(c[1]):requires_grad_()
      local w, b = nil, nil
      if c[2] then w, b = W():requires_grad_(), B():requires_grad_() end
      local rm, rv = RM(), RV()
      local y = F.batch_norm(x, rm, rv, {weight = w, bias = b, training = c[3], momentum = c[4], eps = c[5]})
      H.assert_close(flat(y), ref.y, RTOL, ATOL, name)
      ;(y * weights(y:shape())):sum():backward()
      H.assert_close(flat(x.grad), ref.dx, RTOL, ATOL, name .. " dx")
      if c[2] then
        H.assert_close(w.grad:totable(), ref.dw, RTOL, ATOL, name .. " dw")
        H.assert_close(b.grad:totable(), ref.db, RTOL, ATOL, name .. " db")
      end
      H.assert_close(rm:totable(), ref.running_mean, RTOL, ATOL, name .. " running_mean")
      H.assert_close(rv:totable(), ref.running_var, RTOL, ATOL, name .. " running_var")
    end)
  end

  it("BatchNorm2d: two training steps, then eval (the script's module)", function()
    local m = nn.BatchNorm2d(3, {momentum = 0.2})
    local x = X({4, 3, 2, 3})
    m(x)
    m(x * 2)
    m:eval()
    local y = m(x)
    H.assert_close(m.running_mean:totable(), REF.module.running_mean, RTOL, ATOL, "running_mean")
    H.assert_close(m.running_var:totable(), REF.module.running_var, RTOL, ATOL, "running_var")
    assert.equal(REF.module.num_batches_tracked, m.num_batches_tracked:item())
    H.assert_close(flat(y), REF.module.eval_y, RTOL, ATOL, "eval y")
  end)
end)

describe("BatchNorm modules", function()
  it("have PyTorch's parameters, buffers and printing", function()
    local m = nn.BatchNorm2d(3)
    assert.equal("BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=true, track_running_stats=true)", tostring(m))
    assert.same({1, 1, 1}, m.weight:totable())
    assert.same({0, 0, 0}, m.bias:totable())
    assert.equal(2, #m:parameters())
    local names = {}
    for _, p in ipairs(m:named_buffers()) do names[#names + 1] = p[1] end
    assert.same({"running_mean", "running_var", "num_batches_tracked"}, names)
    assert.equal("int32", m.num_batches_tracked:dtype())
    assert.same({}, m.num_batches_tracked:shape())
    local plain = nn.BatchNorm1d(4, {affine = false, track_running_stats = false})
    assert.equal("BatchNorm1d(4, eps=1e-05, momentum=0.1, affine=false, track_running_stats=false)",
      tostring(plain))
    assert.equal(0, #plain:parameters())
    assert.equal(0, #plain:buffers())
  end)

  it("use batch statistics in training and running statistics in eval and mc modes", function()
    local m = nn.BatchNorm1d(3)
    local x = X({24, 3})
    local y_train = m(x)
    H.assert_same(y_train, F.batch_norm(x, nil, nil, {training = true, weight = m.weight, bias = m.bias}))
    assert.equal(1, m.num_batches_tracked:item())
    local rm, rv = m.running_mean:clone(), m.running_var:clone()
    m:eval()
    local y_eval = m(x)
    H.assert_same(y_eval, F.batch_norm(x, rm, rv, {weight = m.weight, bias = m.bias}))
    m:mc()
    H.assert_same(m(x), y_eval)
    H.assert_same(m.running_mean, rm)
    assert.equal(1, m.num_batches_tracked:item())
    -- without running statistics, every mode normalizes with the batch's
    local plain = nn.BatchNorm1d(3, {track_running_stats = false}):eval()
    H.assert_same(plain(x), y_train)
  end)

  it("accept [N, C, L] (1d) and backpropagate through a small CNN", function()
    local y = nn.BatchNorm1d(3)(X({6, 3, 4}))
    assert.same({6, 3, 4}, y:shape())
    local model = nn.Sequential(nn.Conv2d(2, 3, 3, {padding = 1}), nn.BatchNorm2d(3), nn.ReLU(),
      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    local x = dn.randn(4, 2, 5, 5):requires_grad_()
    model(x):sum():backward()
    assert.same({4, 2, 5, 5}, x.grad:shape())
    assert.same({3}, model[2].weight.grad:shape())
    assert.same({3}, model[2].bias.grad:shape())
  end)

  it("reset their statistics and parameters", function()
    local m = nn.BatchNorm2d(3)
    m(X({4, 3, 2, 3}))
    dn.no_grad(function() m.weight:fill_(2) end)
    m:reset_running_stats()
    assert.same({0, 0, 0}, m.running_mean:totable())
    assert.same({1, 1, 1}, m.running_var:totable())
    assert.equal(0, m.num_batches_tracked:item())
    assert.same({2, 2, 2}, m.weight:totable())
    m(X({4, 3, 2, 3}))
    m:reset_parameters()
    assert.same({0, 0, 0}, m.running_mean:totable())
    assert.same({1, 1, 1}, m.weight:totable())
  end)
end)

describe("BatchNorm state", function()
  local dir
  setup(function() dir = H.make_tempdir() end)
  teardown(function() H.remove_dir(dir) end)

  it("saves the running statistics in state_dict and checkpoints, and loads them back", function()
    local model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3, {momentum = 0.5}))
    model(X({24, 3}))
    model(X({24, 3}) * 3)
    local sd = model:state_dict()
    assert.is_not_nil(sd["2.running_mean"])
    assert.is_not_nil(sd["2.running_var"])
    assert.equal(2, sd["2.num_batches_tracked"]:item())
    local path = dir .. "/bn.safetensors"
    checkpoint.save(path, {model = sd})
    local fresh = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3, {momentum = 0.5}))
    fresh:load_state_dict(checkpoint.load(path).model)
    H.assert_same(fresh[2].running_mean, model[2].running_mean)
    H.assert_same(fresh[2].running_var, model[2].running_var)
    assert.equal(2, fresh[2].num_batches_tracked:item())
    model:eval()
    fresh:eval()
    local x = X({24, 3})
    H.assert_same(fresh(x), model(x))
  end)
end)

describe("batch_norm errors", function()
  local function fails(message, f, ...)
    local ok, err = pcall(f, ...)
    assert.is_false(ok)
    assert.truthy(tostring(err):find(message, 1, true), tostring(err))
  end

  it("checks options in Lua, with the project's wording", function()
    fails("BatchNorm2d: num_features must be an integer >= 1 (got 0)", nn.BatchNorm2d, 0)
    fails("BatchNorm2d: eps must be a finite number >= 0 (got -1)", nn.BatchNorm2d, 3, {eps = -1})
    fails("BatchNorm1d: momentum must be a number in [0, 1] (got 2)", nn.BatchNorm1d, 3, {momentum = 2})
    fails("BatchNorm1d: affine must be true or false (got 1)", nn.BatchNorm1d, 3, {affine = 1})
    fails("BatchNorm2d: unknown option 'foo' (known: affine, eps, momentum, track_running_stats)", nn.BatchNorm2d,
      3, {foo = 1})
    fails("batch_norm: unknown option 'foo'", F.batch_norm, X({24, 3}), nil, nil, {foo = 1})
    fails("batch_norm: training must be true or false (got \"yes\")", F.batch_norm, X({24, 3}), nil, nil,
      {training = "yes"})
    fails("batch_norm (weight): a tensor expected (got 3)", F.batch_norm, X({24, 3}), nil, nil, {weight = 3})
  end)

  it("checks the input against the module", function()
    fails("BatchNorm2d: input must be [N, C, H, W] (got shape [24,3])", nn.BatchNorm2d(3), X({24, 3}))
    fails("BatchNorm1d: input must be [N, C] or [N, C, L] (got shape [4,3,2,3])", nn.BatchNorm1d(3),
      X({4, 3, 2, 3}))
    fails("BatchNorm1d: input has 3 channels, expected num_features = 4 (input shape [24,3])", nn.BatchNorm1d(4),
      X({24, 3}))
  end)

  it("reports the runtime's messages", function()
    local m = nn.BatchNorm1d(3)
    fails("batch_norm: expected more than 1 value per channel when training (got input [1,3])", m, dn.zeros(1, 3))
    assert.equal(0, m.num_batches_tracked:item())
    m:eval()
    assert.same({1, 3}, m(dn.zeros(1, 3)):shape())
    fails("batch_norm: eval mode (training false) needs running_mean and running_var", F.batch_norm, X({24, 3}))
    fails("batch_norm: weight must be [3], one value per channel of input [24,3] (got shape [4])", F.batch_norm,
      X({24, 3}), nil, nil, {training = true, weight = dn.ones(4)})
    fails("batch_norm: running_var must be [3], one value per channel of input [24,3] (got shape [2])",
      F.batch_norm, X({24, 3}), dn.zeros(3), dn.ones(2))
    fails("batch_norm: input must be float32 (got int32)", F.batch_norm, dn.zeros({4, 3}, "int32"), nil, nil,
      {training = true})
    fails("batch_norm: running_mean must not require grad (it is updated in place)", F.batch_norm, X({24, 3}),
      dn.zeros(3):requires_grad_(), dn.ones(3), {training = true})
  end)
end)
