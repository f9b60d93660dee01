/* See testutil_norm.h. */
#include "testutil.h"

#include "testutil_norm.h"

void norm_collect_outs(dn_tensor *outs[N_OUTS], dn_tensor *y, dn_tensor *running_mean, dn_tensor *running_var,
                       dn_tensor *x, dn_tensor *weight, dn_tensor *bias) {
  dn_tensor *got[N_OUTS] = {y, running_mean, running_var, x->grad, weight ? weight->grad : NULL,
                            bias ? bias->grad : NULL};
  for (int k = 0; k < N_OUTS; k++) {
    outs[k] = NULL;
    if (got[k]) DN_OK_OR_FAIL(dn_contiguous(&outs[k], got[k]));
  }
}

void norm_assert_same_bits(dn_tensor *const a[N_OUTS], dn_tensor *const b[N_OUTS], const char *what,
                           const char *against) {
  static const char *const names[N_OUTS] = {"y", "running_mean", "running_var", "dx", "dweight", "dbias"};
  for (int k = 0; k < N_OUTS; k++) {
    if (!a[k] || !b[k]) {
      if (a[k] || b[k]) fail_msg("%s: %s given by one run only", what, names[k]);
      continue;
    }
    assert_int_equal(dn_tensor_numel(a[k]), dn_tensor_numel(b[k]));
    const uint32_t *ua = dn_tensor_data(a[k]), *ub = dn_tensor_data(b[k]);
    for (int64_t i = 0; i < dn_tensor_numel(a[k]); i++)
      if (ua[i] != ub[i])
        fail_msg("%s: %s differs from %s at %lld: %.9g vs %.9g", what, names[k], against, (long long)i,
                 dn_test_at(a[k], i), dn_test_at(b[k], i));
  }
}

void norm_release_outs(dn_tensor *outs[N_OUTS]) {
  for (int k = 0; k < N_OUTS; k++) dn_tensor_release(outs[k]);
}
